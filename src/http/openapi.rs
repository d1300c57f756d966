//! The API's OpenAPI 3.1 description (contract section 12), served at
//! `GET /v1/openapi.json` and kept in `docs/openapi.json`.
//!
//! The operations come from the `#[utoipa::path]` attributes on the
//! handlers themselves; the shapes of the answers from the documentation
//! types below, which mirror what the handlers write; the CloudEvent
//! request body from the JSON Schemas the `events` crate generates from
//! the catalogue. Documenting a new route is three steps: a
//! `#[utoipa::path]` on its handler, its name in [`ApiDoc`]'s `paths`, and
//! `UPDATE_OPENAPI=1 cargo test --lib openapi` to rewrite the kept copy.

#![allow(
    dead_code,
    reason = "the documentation types are never built, only described"
)]

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The description as a JSON document, made once.
pub fn description() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document =
            serde_json::to_value(ApiDoc::openapi()).expect("the description serialises");
        add_event_schemas(&mut document);
        document
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rotation ledger",
        description = "An event-sourced ledger for job rotation schemes. The public contract is docs/contract.md; errors are RFC 9457 problems with one `code`."
    ),
    paths(
        super::events::append,
        super::events::list,
        super::events::stream,
        super::events::live,
        super::events::rejections,
        super::events::verify,
        super::board::dashboard,
        super::board::page,
        super::board::asset,
        super::healthz,
        super::metrics,
        super::openapi_json,
        super::persons::access,
        super::persons::erase,
        super::proofs::checkpoint,
        super::proofs::key,
        super::proofs::inclusion,
        super::proofs::consistency,
        super::admin::stats,
        super::admin::backup,
        super::group::group,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Bearer tokens (contract section 5): each maps to a role and partnerships.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds the `events` crate's JSON Schemas as components: `CloudEvent`,
/// whose `data` is any of the catalogue's data schemas (named after their
/// types), and `Submission`, one CloudEvent or a batch. Each schema's
/// `$defs` become components of their own, named `<schema>.<definition>`.
fn add_event_schemas(document: &mut Value) {
    let schemas = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .expect("the derived description has component schemas");
    let mut data_refs = Vec::new();
    for (file, schema) in rotation_events::schema::all() {
        let name = file.trim_end_matches(".json");
        let name = if name == "cloudevent" {
            "CloudEvent"
        } else {
            name
        };
        let mut schema = schema.to_value();
        let object = schema.as_object_mut().expect("a schema is an object");
        object.remove("$schema");
        if let Some(Value::Object(defs)) = object.remove("$defs") {
            for (def, mut inner) in defs {
                rewrite_refs(&mut inner, name);
                schemas.insert(format!("{name}.{def}"), inner);
            }
        }
        rewrite_refs(&mut schema, name);
        if name != "CloudEvent" {
            data_refs.push(json!({ "$ref": format!("#/components/schemas/{name}") }));
        }
        schemas.insert(name.to_owned(), schema);
    }
    if let Some(data) = schemas
        .get_mut("CloudEvent")
        .and_then(|s| s.pointer_mut("/properties/data"))
    {
        let description = data.get("description").cloned();
        let mut any_of = Map::new();
        if let Some(description) = description {
            any_of.insert("description".into(), description);
        }
        any_of.insert("anyOf".into(), Value::Array(data_refs));
        *data = Value::Object(any_of);
    }
    schemas.insert(
        "Submission".into(),
        json!({
            "description": "One CloudEvent, or a batch of them (all or nothing).",
            "oneOf": [
                { "$ref": "#/components/schemas/CloudEvent" },
                { "type": "array", "minItems": 1, "items": { "$ref": "#/components/schemas/CloudEvent" } }
            ]
        }),
    );
}

/// Points `#/$defs/X` references of the schema `name` at its components.
fn rewrite_refs(value: &mut Value, name: &str) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => {
                        if let Some(def) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/components/schemas/{name}.{def}");
                        }
                    }
                    (_, inner) => rewrite_refs(inner, name),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, name)),
        _ => {}
    }
}

/// The request body of `POST /v1/events`; its schema is the `events`
/// crate's, put in place by [`add_event_schemas`].
pub(super) struct Submission;

impl utoipa::PartialSchema for Submission {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::Object::new().into()
    }
}

impl ToSchema for Submission {}

/// The refusal of a request without a known token, which every
/// authenticated route may answer.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "`unauthorized`: no token, or one the configuration does not know",
    content_type = "application/problem+json"
)]
pub(super) struct Unauthorized(Problem);

/// The refusal of a route for admins to any other token.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 403,
    description = "`forbidden`: an admin token is needed",
    content_type = "application/problem+json"
)]
pub(super) struct AdminOnly(Problem);

/// A storage failure, which any route that reads or writes the ledger
/// may answer.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 500,
    description = "`internal`: a storage failure, logged",
    content_type = "application/problem+json"
)]
pub(super) struct Internal(Problem);

/// An RFC 9457 problem, the body of every error (`application/problem+json`).
#[derive(ToSchema)]
pub(super) struct Problem {
    /// `urn:rotation-ledger:problem:<code>`.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// The contract's code (`invalid_event`, `duplicate_id_conflict`,
    /// `version_conflict`, `unknown_stream`, `rule_violation`, `forbidden`)
    /// or one of this API's own (`unauthorized`, `not_found`,
    /// `method_not_allowed`, `invalid_request`, `payload_too_large`,
    /// `unsupported_media_type`, `unavailable`, `internal`).
    code: String,
    /// For `version_conflict`: the stream's version now.
    current_version: Option<u64>,
    /// For a rejected submission: one receipt per event.
    results: Option<Vec<Receipt>>,
}

/// The answer for one event (contract section 4).
#[derive(ToSchema)]
#[schema(as = Receipt)]
pub(super) struct Receipt {
    /// The event's id; for a refused body, its `id` string if it held one.
    id: Option<String>,
    status: ReceiptStatus,
    position: Option<u64>,
    streamversion: Option<u64>,
    error: Option<Violation>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(super) enum ReceiptStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// Why an event was refused.
#[derive(ToSchema)]
pub(super) struct Violation {
    code: String,
    message: String,
    current_version: Option<u64>,
}

/// `POST /v1/events`: every event accepted or a duplicate.
#[derive(ToSchema)]
pub(super) struct Results {
    results: Vec<Receipt>,
}

/// A committed event: the CloudEvent with the ledger's attributes
/// (`position`, `streamversion`, `recordedtime`, `prevhash`, `hash`).
#[derive(ToSchema)]
#[schema(as = CommittedEvent)]
pub(super) struct CommittedEvent {
    specversion: String,
    id: String,
    source: String,
    #[schema(rename = "type")]
    event_type: String,
    subject: String,
    time: String,
    partnership: String,
    data: Value,
    position: u64,
    streamversion: u64,
    recordedtime: String,
    prevhash: String,
    hash: String,
}

/// A page of committed events in position order.
#[derive(ToSchema)]
pub(super) struct EventsPage {
    events: Vec<CommittedEvent>,
    /// Ask again with `after` set to this for the next page.
    next_after: u64,
    head_position: u64,
}

/// One stream's events in version order.
#[derive(ToSchema)]
pub(super) struct StreamEvents {
    subject: String,
    partnership: String,
    version: u64,
    events: Vec<CommittedEvent>,
}

/// A rejected submission as the ledger keeps it.
#[derive(ToSchema)]
pub(super) struct Rejection {
    seq: u64,
    received: String,
    origin: String,
    code: String,
    message: String,
    /// The refused event's `id`, whenever the body held one as a string.
    event_id: Option<String>,
    partnership: Option<String>,
    /// The submission as received, when it is UTF-8.
    body: Option<String>,
    /// The submission as received, base64, when it is not UTF-8.
    body_base64: Option<String>,
}

/// A page of rejections by sequence number.
#[derive(ToSchema)]
pub(super) struct RejectionsPage {
    rejections: Vec<Rejection>,
    next_after: u64,
}

/// The hash chain checked from position 1.
#[derive(ToSchema)]
pub(super) struct Verdict {
    ok: bool,
    head_position: u64,
    head_hash: String,
    first_bad_position: Option<u64>,
    /// What is wrong at `first_bad_position`.
    problem: Option<String>,
}

/// The ledger's counts, as `rotation-ledger stats` prints them.
#[derive(ToSchema)]
pub(super) struct Stats {
    events: u64,
    streams: u64,
    rejections: u64,
    head_hash: String,
    recordedtime: String,
    /// The bytes sled takes on disk, as it reports them.
    disk_bytes: u64,
    /// Registrations committed before sealing, whose profiles stay in clear.
    clear_profiles: u64,
    /// The old head (`position`, `hash`, `recordedtime`) when this ledger
    /// was resealed from another.
    resealed_from: Option<serde_json::Value>,
}

/// Where a backup goes.
#[derive(ToSchema)]
pub(super) struct BackupRequest {
    /// An absolute path on the server's machine: a new or empty directory.
    out: String,
}

/// What a backup copied.
#[derive(ToSchema)]
pub(super) struct BackupReport {
    out: String,
    /// The copy's head: every event acknowledged before the backup began
    /// is at or below it.
    head_position: u64,
    head_hash: String,
    /// The store's keys copied.
    store_keys: u64,
    /// The files copied beside the store, as named in the copy.
    files: Vec<String>,
    /// How long commits waited for the copy.
    paused_ms: u64,
}

/// The ledger group (contract section 11).
#[derive(ToSchema)]
pub(super) struct Group {
    /// The node that answered.
    node: String,
    /// The lease's holder (`node`, `http`, `expires_ms`); null when no
    /// node holds it (a failover under way) or without a group.
    writer: Option<serde_json::Value>,
    /// Every node that reported within the lease, by name.
    nodes: Vec<GroupNode>,
}

/// One node of a ledger group.
#[derive(ToSchema)]
pub(super) struct GroupNode {
    node: String,
    /// `writer`, `follower`, or `single` without a group.
    role: String,
    /// The node's head position.
    applied: u64,
    /// Where its HTTP API listens.
    http: String,
    /// When it last reported, in milliseconds since the Unix epoch.
    updated_ms: u64,
    /// The writer's applied position less this node's.
    lag: u64,
}

/// Liveness, with where the log and the dashboards stand.
#[derive(ToSchema)]
pub(super) struct Health {
    /// `ok`, or `unavailable` (with status 503) when the chain is broken
    /// or the store cannot write.
    status: String,
    /// Why the ledger is unavailable; absent when it is ok.
    reason: Option<String>,
    /// `verifying`, `verified` or `broken`: the whole chain's check,
    /// run in the background after start.
    chain: String,
    /// The first bad position when the chain is broken.
    first_bad_position: Option<u64>,
    head_position: u64,
    projected_position: u64,
    /// `live`, `catching_up` or `rebuilding`.
    projection: String,
}

/// `?after=<n>&limit=<n>`: a page.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParams {
    /// Start after this position (or sequence number); default 0.
    after: Option<u64>,
    /// At most this many (default 1,000; capped at 10,000; 0 is refused).
    limit: Option<u64>,
}

/// `?after=<position>` for the live tail.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AfterParams {
    /// Start after this position; `Last-Event-ID` takes precedence.
    after: Option<u64>,
}

/// `?raw=true` for an admin's exact figures.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RawParams {
    /// Every count exact, without disclosure control (admin only).
    raw: Option<bool>,
}

/// `?token=` for the board page.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TokenParams {
    /// The token, kept in a cookie after the first visit.
    token: Option<String>,
}

#[cfg(test)]
mod tests {
    /// `docs/openapi.json` is the description the code makes; regenerate
    /// it with `UPDATE_OPENAPI=1 cargo test --lib openapi`.
    #[test]
    fn the_kept_description_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let mut current = serde_json::to_string_pretty(super::description()).unwrap();
        current.push('\n');
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap();
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == current,
            "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test --lib openapi"
        );
    }

    #[test]
    fn the_description_is_openapi_3_1_with_every_route() {
        let document = super::description();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/v1/events",
            "/v1/events/live",
            "/v1/streams/{kind}/{id}",
            "/v1/rejections",
            "/v1/verify",
            "/v1/partnerships/{slug}/dashboard",
            "/boards/{slug}",
            "/assets/{name}",
            "/healthz",
            "/metrics",
            "/v1/openapi.json",
            "/v1/persons/{id}",
            "/v1/persons/{id}/erasure",
            "/v1/checkpoint",
            "/v1/checkpoint/key",
            "/v1/proofs/inclusion",
            "/v1/proofs/consistency",
        ] {
            assert!(paths.contains_key(path), "{path} is not described");
        }
        let schemas = document["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("jobrotation.rotation.release_started"));
        let text = document.to_string();
        assert!(!text.contains("#/$defs/"), "every reference resolves");
    }
}
