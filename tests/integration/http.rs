//! The HTTP API (contract section 5) through its router, without a socket:
//! every route, every error code as problem+json, who may do what, and the
//! live stream.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use rotation_ledger::auth::{Role, token_digest};
use rotation_ledger::config::{Config, TokenEntry};
use rotation_ledger::http::{AppState, MAX_BODY, app};
use rotation_ledger::projector::{Projector, ProjectorOptions, ProjectorTask};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::*;

const ADMIN: &str = "admin-token";
const PUBLISHER: &str = "publisher-stoke";
const BOARD: &str = "board-stoke";
const BOARD_HULL: &str = "board-hull";
const EVALUATOR: &str = "evaluator-all";
const EVALUATOR_HULL: &str = "evaluator-hull";

fn config() -> Config {
    let token = |token: &str, role: Role, partnerships: &[&str]| TokenEntry {
        sha256: token_digest(token),
        role,
        partnerships: partnerships.iter().map(|p| (*p).to_owned()).collect(),
    };
    Config {
        tokens: vec![
            token(ADMIN, Role::Admin, &["*"]),
            token(PUBLISHER, Role::Publisher, &["stoke"]),
            token(BOARD, Role::Board, &["stoke"]),
            token(BOARD_HULL, Role::Board, &["hull"]),
            token(EVALUATOR, Role::Evaluator, &["*"]),
            token(EVALUATOR_HULL, Role::Evaluator, &["hull"]),
        ],
        ..Config::default()
    }
}

/// A ledger, its projector and the router over them.
struct Api {
    temp: TempLedger,
    projector: Projector,
    task: Option<ProjectorTask>,
    shutdown: CancellationToken,
    app: Router,
}

/// One answer, read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// Asserts a problem response with `status` and `code`, and returns it.
    fn problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            "application/problem+json"
        );
        let problem = self.json();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
        assert!(
            problem["type"].as_str().is_some_and(|t| t.ends_with(code)),
            "{problem}"
        );
        assert!(problem["title"].is_string(), "{problem}");
        assert!(problem["detail"].is_string(), "{problem}");
        problem
    }
}

impl Api {
    async fn new() -> Self {
        Self::with(config()).await
    }

    async fn with(config: Config) -> Self {
        let temp = TempLedger::new();
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        let (projector, task) = Projector::start(
            temp.ledger.clone(),
            Arc::clone(&config),
            ProjectorOptions::default(),
            shutdown.clone(),
        )
        .await
        .expect("the projector starts");
        let state = AppState::new(
            temp.ledger.clone(),
            projector.clone(),
            config,
            shutdown.clone(),
        );
        Self {
            app: app(state),
            temp,
            projector,
            task: Some(task),
            shutdown,
        }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a whole body")
            .to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_raw(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Answer {
        let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, content_type);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    async fn post(&self, token: &str, body: &Value) -> Answer {
        self.post_raw(
            Some(token),
            "application/cloudevents+json",
            body.to_string(),
        )
        .await
    }

    /// Sets up the scheme of [`scheme`] over HTTP and waits for the dashboards.
    async fn scheme(&self) {
        let answer = self.post(PUBLISHER, &Value::Array(scheme_events())).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        self.settle().await;
    }

    /// Waits until the dashboards reflect the head.
    async fn settle(&self) {
        self.projector
            .wait_for(self.temp.ledger.head().position)
            .await;
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.join().await.expect("the projector stops cleanly");
        }
    }
}

#[tokio::test]
async fn healthz_and_metrics_need_no_token() {
    let api = Api::new().await;
    let health = api.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    let metrics = api.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header(header::CONTENT_TYPE)
            .starts_with("text/plain; version=0.0.4")
    );
    api.stop().await;
}

#[tokio::test]
async fn one_event_is_answered_with_its_receipt() {
    let api = Api::new().await;
    let event = partnership_registered();
    let answer = api.post(PUBLISHER, &event).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(header::CONTENT_TYPE), "application/json");
    let results = &answer.json()["results"];
    assert_eq!(results.as_array().map(Vec::len), Some(1));
    assert_eq!(results[0]["id"], event["id"]);
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[0]["position"], 1);
    assert_eq!(results[0]["streamversion"], 1);

    let again = api.post(PUBLISHER, &event).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["results"][0]["status"], "duplicate");
    assert_eq!(again.json()["results"][0]["position"], 1);
    api.stop().await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_names_the_failing_event() {
    let api = Api::new().await;
    let good = partnership_registered();
    let bad = referred(99);
    let answer = api.post(PUBLISHER, &json!([good, bad])).await;
    let problem = answer.problem(StatusCode::UNPROCESSABLE_ENTITY, "unknown_stream");
    let results = problem["results"].as_array().expect("receipts");
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["status"] == "rejected"));
    assert_eq!(results[1]["id"], bad["id"]);
    assert_eq!(results[1]["error"]["code"], "unknown_stream");
    assert_eq!(
        api.temp.ledger.head().position,
        0,
        "nothing of the batch is committed"
    );
    api.stop().await;
}

/// Each of the contract's codes, as status and problem.
#[tokio::test]
async fn every_error_code_maps_to_its_status() {
    let api = Api::new().await;
    api.scheme().await;
    let mut conflicting = employer_enrolled(2);
    assert_eq!(
        api.post(PUBLISHER, &conflicting).await.status,
        StatusCode::OK
    );
    conflicting["data"]["name"] = json!("Another name for the same id");
    let hull = with(
        with(partnership_registered(), "/partnership", json!("hull")),
        "/subject",
        json!("partnership/hull"),
    );
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "not a CloudEvent",
            json!({"specversion": "1.0"}),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "another partnership",
            hull,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "same id, other content",
            conflicting,
            StatusCode::CONFLICT,
            "duplicate_id_conflict",
        ),
        (
            "stale expected version",
            with(employer_enrolled(3), "/expectedversion", json!(4)),
            StatusCode::CONFLICT,
            "version_conflict",
        ),
        (
            "no such person",
            referred(77),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_stream",
        ),
        (
            "no such release",
            release_ended(100, 999),
            StatusCode::UNPROCESSABLE_ENTITY,
            "rule_violation",
        ),
    ];
    for (what, body, status, code) in cases {
        let answer = api.post(PUBLISHER, &body).await;
        assert_eq!(
            answer.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let problem = answer.problem(status, code);
        assert_eq!(problem["results"][0]["status"], "rejected", "{what}");
    }
    let stale = api
        .post(
            PUBLISHER,
            &with(partnership_registered(), "/expectedversion", json!(0)),
        )
        .await;
    let problem = stale.problem(StatusCode::CONFLICT, "version_conflict");
    assert_eq!(
        problem["current_version"], 1,
        "the reply says the stream's version"
    );
    api.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_problems_not_failures() {
    let api = Api::new().await;
    let not_json = api
        .post_raw(Some(PUBLISHER), "application/json", "{not json")
        .await;
    not_json.problem(StatusCode::BAD_REQUEST, "invalid_event");
    let empty = api
        .post_raw(Some(PUBLISHER), "application/json", "[]")
        .await;
    empty.problem(StatusCode::BAD_REQUEST, "invalid_event");
    let form = api
        .post_raw(Some(PUBLISHER), "application/x-www-form-urlencoded", "a=b")
        .await;
    form.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let none = api
        .send(
            Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {PUBLISHER}"))
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    none.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = vec![b' '; MAX_BODY + 1];
    let oversized = api
        .post_raw(Some(PUBLISHER), "application/json", huge)
        .await;
    oversized.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let batch = api
        .post_raw(
            Some(PUBLISHER),
            "application/cloudevents-batch+json; charset=utf-8",
            json!([partnership_registered()]).to_string(),
        )
        .await;
    assert_eq!(
        batch.status,
        StatusCode::OK,
        "a batch content type with parameters is JSON"
    );
    api.stop().await;
}

#[tokio::test]
async fn callers_without_a_known_token_get_401() {
    let api = Api::new().await;
    let body = partnership_registered().to_string();
    let missing = api.post_raw(None, "application/json", body.clone()).await;
    missing.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        missing
            .header(header::WWW_AUTHENTICATE)
            .starts_with("Bearer")
    );
    let unknown = api
        .post_raw(Some("not-a-token"), "application/json", body.clone())
        .await;
    unknown.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let basic = api
        .send(
            Request::get("/v1/events")
                .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    basic.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    for path in [
        "/v1/events",
        "/v1/events/live",
        "/v1/streams/partnership/stoke",
        "/v1/partnerships/stoke/dashboard",
        "/v1/rejections",
        "/v1/verify",
        "/boards/stoke",
    ] {
        api.get(path, None)
            .await
            .problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(api.temp.ledger.head().position, 0);
    api.stop().await;
}

/// Who may read what: (token, path, expected status).
#[tokio::test]
async fn roles_and_partnerships_are_enforced() {
    let api = Api::new().await;
    api.scheme().await;
    let person = format!("/v1/streams/person/{}", uuid(20));
    let cases: Vec<(&str, String, StatusCode)> = vec![
        (
            BOARD,
            "/v1/partnerships/stoke/dashboard".into(),
            StatusCode::OK,
        ),
        (
            BOARD_HULL,
            "/v1/partnerships/stoke/dashboard".into(),
            StatusCode::FORBIDDEN,
        ),
        (
            BOARD,
            "/v1/partnerships/hull/dashboard".into(),
            StatusCode::FORBIDDEN,
        ),
        (
            BOARD,
            "/v1/partnerships/stoke/dashboard?raw=true".into(),
            StatusCode::FORBIDDEN,
        ),
        (
            ADMIN,
            "/v1/partnerships/stoke/dashboard?raw=true".into(),
            StatusCode::OK,
        ),
        (
            PUBLISHER,
            "/v1/partnerships/stoke/dashboard".into(),
            StatusCode::FORBIDDEN,
        ),
        (
            EVALUATOR,
            "/v1/partnerships/stoke/dashboard".into(),
            StatusCode::FORBIDDEN,
        ),
        (BOARD, "/v1/events".into(), StatusCode::FORBIDDEN),
        (PUBLISHER, "/v1/events".into(), StatusCode::FORBIDDEN),
        (EVALUATOR, "/v1/events".into(), StatusCode::OK),
        (ADMIN, "/v1/events".into(), StatusCode::OK),
        (PUBLISHER, person.clone(), StatusCode::OK),
        (ADMIN, person.clone(), StatusCode::OK),
        (BOARD, person.clone(), StatusCode::FORBIDDEN),
        (EVALUATOR, person.clone(), StatusCode::FORBIDDEN),
        (PUBLISHER, "/v1/events/live".into(), StatusCode::FORBIDDEN),
        (EVALUATOR, "/v1/rejections".into(), StatusCode::FORBIDDEN),
        (ADMIN, "/v1/rejections".into(), StatusCode::OK),
        (PUBLISHER, "/v1/verify".into(), StatusCode::FORBIDDEN),
        (ADMIN, "/v1/verify".into(), StatusCode::OK),
        (BOARD, "/boards/stoke".into(), StatusCode::OK),
        (BOARD_HULL, "/boards/stoke".into(), StatusCode::FORBIDDEN),
        (ADMIN, "/boards/stoke".into(), StatusCode::OK),
        (EVALUATOR, "/boards/stoke".into(), StatusCode::FORBIDDEN),
    ];
    for (token, path, status) in cases {
        let answer = api.get(&path, Some(token)).await;
        assert_eq!(
            answer.status,
            status,
            "{token} GET {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        if status == StatusCode::FORBIDDEN {
            answer.problem(status, "forbidden");
        }
    }
    // A board token may not publish.
    let board_post = api.post(BOARD, &employer_enrolled(5)).await;
    board_post.problem(StatusCode::FORBIDDEN, "forbidden");
    api.stop().await;
}

/// Regression: a board or evaluator token's post used to be read,
/// validated and kept whole as a rejection, so anyone holding a board link
/// could grow the store by 4 MiB a request. Now the role is checked before
/// the body is read, nothing is kept, and the refusal is counted.
#[tokio::test]
async fn read_only_tokens_cannot_fill_the_disk_with_rejections() {
    let api = Api::new().await;
    api.scheme().await;
    let mut large = employer_enrolled(5);
    large["padding"] = Value::from("x".repeat(MAX_BODY / 2));
    for token in [BOARD, EVALUATOR, BOARD, EVALUATOR_HULL] {
        api.post(token, &large)
            .await
            .problem(StatusCode::FORBIDDEN, "forbidden");
    }
    // Not even a body that is not JSON is looked at.
    api.post_raw(Some(BOARD), "application/json", "not JSON")
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let rejections = api.get("/v1/rejections", Some(ADMIN)).await.json();
    assert_eq!(rejections["rejections"], json!([]), "{rejections}");
    let text = String::from_utf8(api.get("/metrics", None).await.body.to_vec()).unwrap();
    for line in [
        "rotation_ledger_publish_refused_total{role=\"board\"} 3",
        "rotation_ledger_publish_refused_total{role=\"evaluator\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    // A publisher's rejection is still kept.
    api.post(PUBLISHER, &large)
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_event");
    let rejections = api.get("/v1/rejections", Some(ADMIN)).await.json();
    assert_eq!(rejections["rejections"].as_array().map(Vec::len), Some(1));
    api.stop().await;
}

/// A publisher that keeps sending what is rejected is stopped at its
/// hourly quota of rejected bytes with 429 and `Retry-After`; other
/// publishers go on.
#[tokio::test]
async fn a_publishers_rejections_are_bounded_by_an_hourly_quota() {
    let mut bad = employer_enrolled(5);
    bad["padding"] = Value::from("x".repeat(800));
    let size = bad.to_string().len() as u64;
    let mut config = config();
    // Room for two and a half such bodies.
    config.limits.rejected_bytes_per_hour = size * 5 / 2;
    let other = "publisher-stoke-2";
    config.tokens.push(TokenEntry {
        sha256: token_digest(other),
        role: Role::Publisher,
        partnerships: vec!["stoke".into()],
    });
    let api = Api::with(config).await;
    api.scheme().await;
    for _ in 0..3 {
        api.post(PUBLISHER, &bad)
            .await
            .problem(StatusCode::BAD_REQUEST, "invalid_event");
    }
    // Three bodies: the quota is used up.
    let refused = api.post(PUBLISHER, &bad).await;
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let seconds: u64 = refused
        .header(header::RETRY_AFTER)
        .parse()
        .expect("Retry-After in seconds");
    assert!((3_500..=3_600).contains(&seconds), "{seconds}");
    // Even a good event waits: the ledger cannot tell before reading it.
    api.post(PUBLISHER, &employer_enrolled(6))
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let rejections = api.get("/v1/rejections", Some(ADMIN)).await.json();
    assert_eq!(rejections["rejections"].as_array().map(Vec::len), Some(3));
    let answer = api.post(other, &employer_enrolled(6)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    let text = String::from_utf8(api.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "rotation_ledger_publish_over_quota_total 2"),
        "{text}"
    );
    api.stop().await;
}

#[tokio::test]
async fn events_are_paged_in_position_order() {
    let api = Api::new().await;
    api.scheme().await;
    let page = api.get("/v1/events?limit=2", Some(EVALUATOR)).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.json();
    let positions: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2]);
    assert_eq!(body["next_after"], 2);
    assert_eq!(body["head_position"], 6);
    assert!(body["events"][0]["hash"].is_string());

    let rest = api.get("/v1/events?after=2", Some(ADMIN)).await.json();
    assert_eq!(rest["events"].as_array().map(Vec::len), Some(4));
    assert_eq!(rest["next_after"], 6);
    let end = api.get("/v1/events?after=6", Some(ADMIN)).await.json();
    assert_eq!(end["events"], json!([]));
    assert_eq!(end["next_after"], 6, "an empty page keeps the cursor");

    // An evaluator for another partnership sees none of these, but moves on.
    let other = api.get("/v1/events", Some(EVALUATOR_HULL)).await.json();
    assert_eq!(other["events"], json!([]));
    assert_eq!(other["next_after"], 6);

    api.get("/v1/events?limit=0", Some(ADMIN))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_request");
    api.get("/v1/events?after=minus-one", Some(ADMIN))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_request");
    let capped = api.get("/v1/events?limit=1000000", Some(ADMIN)).await;
    assert_eq!(
        capped.status,
        StatusCode::OK,
        "a large limit is capped, not refused"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_stream_is_read_in_version_order() {
    let api = Api::new().await;
    api.scheme().await;
    let person = api
        .get(&format!("/v1/streams/person/{}", uuid(20)), Some(PUBLISHER))
        .await
        .json();
    assert_eq!(person["subject"], format!("person/{}", uuid(20)));
    assert_eq!(person["partnership"], "stoke");
    assert_eq!(person["version"], 2);
    let versions: Vec<u64> = person["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["streamversion"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    let partnership = api
        .get("/v1/streams/partnership/stoke", Some(ADMIN))
        .await
        .json();
    assert_eq!(
        partnership["events"][0]["type"],
        "jobrotation.partnership.registered"
    );

    for missing in [
        format!("/v1/streams/person/{}", uuid(404)),
        "/v1/streams/planet/earth".to_owned(),
        "/v1/streams/person/not-a-uuid".to_owned(),
    ] {
        api.get(&missing, Some(ADMIN))
            .await
            .problem(StatusCode::NOT_FOUND, "not_found");
    }
    api.stop().await;
}

#[tokio::test]
async fn dashboards_are_protected_unless_raw_for_an_admin() {
    let api = Api::new().await;
    api.scheme().await;
    let protected = api
        .get("/v1/partnerships/stoke/dashboard", Some(BOARD))
        .await;
    assert_eq!(protected.status, StatusCode::OK);
    assert_eq!(protected.header(header::CACHE_CONTROL), "private, no-store");
    let protected = protected.json();
    assert_eq!(protected["partnership"], "stoke");
    assert_eq!(protected["as_of"]["position"], 6);
    // One employer is a count of 1: hidden, and listed as hidden.
    assert_eq!(protected["totals"]["employers_enrolled"], Value::Null);
    assert!(
        protected["suppressed"]
            .as_array()
            .unwrap()
            .contains(&json!("/totals/employers_enrolled"))
    );
    assert_eq!(protected["disclosure"]["threshold"], 10);

    let raw = api
        .get("/v1/partnerships/stoke/dashboard?raw=true", Some(ADMIN))
        .await
        .json();
    assert_eq!(raw["totals"]["employers_enrolled"], 1);
    assert_eq!(raw["totals"]["rotations_agreed"], 1);
    assert!(raw.get("suppressed").is_none());

    // The figures follow the log.
    let answer = api.post(PUBLISHER, &employer_enrolled(2)).await;
    assert_eq!(answer.status, StatusCode::OK);
    api.settle().await;
    let raw = api
        .get("/v1/partnerships/stoke/dashboard?raw=true", Some(ADMIN))
        .await
        .json();
    assert_eq!(raw["totals"]["employers_enrolled"], 2);
    assert_eq!(raw["as_of"]["position"], 7);

    api.get("/v1/partnerships/nowhere/dashboard", Some(ADMIN))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.get("/v1/partnerships/stoke/dashboard?raw=maybe", Some(ADMIN))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_request");
    api.stop().await;
}

#[tokio::test]
async fn the_board_page_opens_with_its_link_and_reloads_with_its_cookie() {
    let api = Api::new().await;
    api.scheme().await;
    let page = api.get(&format!("/boards/stoke?token={BOARD}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/board.js"));
    let cookie = page.header(header::SET_COOKIE).to_owned();
    assert!(cookie.contains("Path=/boards/stoke"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // A reload: the script has taken the token out of the address.
    let pair = cookie.split(';').next().unwrap().to_owned();
    let reload = api
        .send(
            Request::get("/boards/stoke")
                .header(header::COOKIE, &pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reload.status, StatusCode::OK);
    // The cookie is for the page only: the API wants a bearer token.
    let api_with_cookie = api
        .send(
            Request::get("/v1/partnerships/stoke/dashboard")
                .header(header::COOKIE, &pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    api_with_cookie.problem(StatusCode::UNAUTHORIZED, "unauthorized");

    api.get(&format!("/boards/stoke?token={BOARD_HULL}"), None)
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    api.get("/boards/stoke?token=wrong", None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthorized");
    api.get(&format!("/boards/Not_A_Slug?token={ADMIN}"), None)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.stop().await;
}

#[tokio::test]
async fn assets_are_served_with_types_and_validators() {
    let api = Api::new().await;
    for (name, content_type) in [
        ("board.js", "text/javascript; charset=utf-8"),
        ("board.css", "text/css; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
    ] {
        let asset = api.get(&format!("/assets/{name}"), None).await;
        assert_eq!(asset.status, StatusCode::OK, "{name}");
        assert_eq!(asset.header(header::CONTENT_TYPE), content_type);
        assert!(asset.header(header::CACHE_CONTROL).contains("max-age"));
        assert!(!asset.body.is_empty());
        let etag = asset.header(header::ETAG).to_owned();
        let again = api
            .send(
                Request::get(format!("/assets/{name}"))
                    .header(header::IF_NONE_MATCH, &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{name}");
        assert!(again.body.is_empty());
    }
    api.get("/assets/secret.txt", None)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.stop().await;
}

#[tokio::test]
async fn rejections_and_the_chain_are_there_for_the_admin() {
    let api = Api::new().await;
    api.scheme().await;
    api.post(PUBLISHER, &referred(55))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "unknown_stream");
    api.post_raw(Some(PUBLISHER), "application/json", "{oops")
        .await;
    let rejections = api.get("/v1/rejections", Some(ADMIN)).await.json();
    let codes: Vec<&str> = rejections["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown_stream", "invalid_event"]);
    assert_eq!(rejections["rejections"][0]["origin"], "http");
    assert_eq!(
        rejections["rejections"][1]["body"], "{oops",
        "kept as received"
    );
    let after = rejections["next_after"].as_u64().unwrap();
    let none = api
        .get(&format!("/v1/rejections?after={after}"), Some(ADMIN))
        .await
        .json();
    assert_eq!(none["rejections"], json!([]));

    let verify = api.get("/v1/verify", Some(ADMIN)).await.json();
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["head_position"], 6);
    assert_eq!(verify["head_hash"], api.temp.ledger.head().hash);
    assert_eq!(verify["first_bad_position"], Value::Null);
    api.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let api = Api::new().await;
    api.get("/v2/everything", Some(ADMIN))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    let delete = api
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    delete.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    api.stop().await;
}

#[tokio::test]
async fn metrics_count_appends_rejections_and_lag() {
    let api = Api::new().await;
    api.scheme().await;
    api.post(PUBLISHER, &referred(56)).await;
    let text = String::from_utf8(api.get("/metrics", None).await.body.to_vec()).unwrap();
    for line in [
        "rotation_ledger_appended_events_total{status=\"accepted\"} 6",
        "rotation_ledger_appended_events_total{status=\"rejected\"} 1",
        "rotation_ledger_rejections_total{code=\"unknown_stream\"} 1",
        "rotation_ledger_events_committed_total 6",
        "rotation_ledger_projected_position 6",
        "rotation_ledger_projection_lag_events 0",
        "rotation_ledger_append_duration_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(text.contains("# TYPE rotation_ledger_append_duration_seconds histogram"));
    api.stop().await;
}

/// Reads server-sent frames from a live body until `count` events came.
async fn frames(body: &mut Body, count: usize) -> Vec<(String, String, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 10 s")
            .expect("the stream goes on")
            .expect("a readable frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut name = String::new();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if !data.is_empty() {
                events.push((name, id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

async fn live(api: &Api, path: &str, last_event_id: Option<&str>) -> Body {
    let mut request = Request::get(path).header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = api
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    response.into_body()
}

#[tokio::test]
async fn the_live_stream_catches_up_then_follows() {
    let api = Api::new().await;
    api.scheme().await;
    let mut body = live(&api, "/v1/events/live?after=3", None).await;
    let caught_up = frames(&mut body, 3).await;
    let ids: Vec<&str> = caught_up.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["4", "5", "6"]);
    assert!(caught_up.iter().all(|(name, _, _)| name == "committed"));
    assert_eq!(caught_up[2].2["position"], 6);
    assert!(caught_up[2].2["hash"].is_string());

    let event = employer_enrolled(7);
    assert_eq!(api.post(PUBLISHER, &event).await.status, StatusCode::OK);
    let followed = frames(&mut body, 1).await;
    assert_eq!(followed[0].1, "7");
    assert_eq!(followed[0].2["id"], event["id"]);

    // A reconnecting client resumes after its Last-Event-ID, whatever `after` says.
    let mut resumed = live(&api, "/v1/events/live?after=0", Some("5")).await;
    let ids: Vec<String> = frames(&mut resumed, 2)
        .await
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, ["6", "7"]);

    // Shutdown ends the stream, so that a graceful shutdown is not kept waiting.
    api.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            frame.expect("a readable frame");
        }
    })
    .await;
    assert!(end.is_ok(), "the live stream ends at shutdown");
    api.stop().await;
}

#[tokio::test]
async fn the_live_stream_keeps_the_connection_alive_when_quiet() {
    let api = Api::new().await;
    api.scheme().await;
    let mut body = live(&api, "/v1/events/live?after=6", None).await;
    tokio::time::pause();
    let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("a keep-alive within a minute of quiet")
        .expect("the stream goes on")
        .expect("a readable frame");
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with(':'), "a comment, not an event: {text:?}");
    tokio::time::resume();
    api.get("/v1/events/live?after=x", Some(ADMIN))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_request");
    let bad_id = api
        .send(
            Request::get("/v1/events/live")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header("last-event-id", "seven")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    bad_id.problem(StatusCode::BAD_REQUEST, "invalid_request");
    api.stop().await;
}

/// The binary: `serve` without a configuration prints a fresh admin token,
/// answers on a real socket, and on SIGTERM finishes, checkpointing the
/// dashboards before it exits 0.
#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let temp = TempLedger::new();
    scheme(&temp).await;
    let dir = temp.into_dir();
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut token, mut suggested) = (None, None, None);
    while addr.is_none() || token.is_none() || suggested.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the banner within 30 s")
            .unwrap()
            .expect("the banner before the output ends");
        if let Some(rest) = line.split("serving http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.split("Admin token, shown only now: ").nth(1) {
            token = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.split("curl ").nth(1) {
            suggested = rest.rsplit(' ').next().map(str::to_owned);
        }
    }
    let (addr, token) = (addr.unwrap(), token.unwrap());
    // The banner's example request works with the token it shows.
    let path = suggested.unwrap().replace(&format!("http://{addr}"), "");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    assert_eq!(token.len(), 64, "32 random bytes in hex");

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /v1/partnerships/stoke/dashboard?raw=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"employers_enrolled\":1"), "{answer}");

    let pid = child.id().expect("the server runs").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server stops within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    let ledger = rotation_ledger::ledger::Ledger::open(dir.path(), Default::default()).unwrap();
    let checkpoint = ledger
        .checkpoint(rotation_ledger::projector::CHECKPOINT)
        .unwrap()
        .expect("a checkpoint at shutdown");
    assert_eq!(u64::from_be_bytes(checkpoint[4..12].try_into().unwrap()), 6);
    ledger.close();
}

impl Api {
    async fn post_json(&self, path: &str, token: &str, body: &Value) -> Answer {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

#[tokio::test]
async fn persons_are_for_admins_only_and_erasure_answers_once_durable() {
    let api = Api::new().await;
    api.scheme().await;
    let person = format!("/v1/persons/{}", uuid(20));
    let erasure = format!("{person}/erasure");
    let reason = json!({"reason": "the person asked"});
    for token in [BOARD, EVALUATOR, PUBLISHER] {
        api.get(&person, Some(token))
            .await
            .problem(StatusCode::FORBIDDEN, "forbidden");
        api.post_json(&erasure, token, &reason)
            .await
            .problem(StatusCode::FORBIDDEN, "forbidden");
    }
    let unknown = format!("/v1/persons/{}", uuid(999));
    api.get(&unknown, Some(ADMIN))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.post_json(&format!("{unknown}/erasure"), ADMIN, &reason)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.post_json(&erasure, ADMIN, &json!({"reason": "x".repeat(501)}))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_event");

    let document = api.get(&person, Some(ADMIN)).await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(
        document.json()["stream"][0]["data"]["profile"]["sex"],
        "female"
    );

    let head = api.temp.ledger.head().position;
    let first = api.post_json(&erasure, ADMIN, &reason).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.json()["position"], head + 1);
    let second = api
        .post_json(&erasure, ADMIN, &json!({"reason": "again"}))
        .await;
    assert_eq!(second.json()["id"], first.json()["id"]);
    assert_eq!(second.json()["erased_now"], false);

    let document = api.get(&person, Some(ADMIN)).await.json();
    assert_eq!(document["erased"], true);
    assert_eq!(document["stream"][0]["data"]["erased"], true, "{document}");
    assert!(document["stream"][0]["data"].get("profile").is_none());
}
