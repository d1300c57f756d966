//! The board page end to end: the real binary serves a small known
//! history, and `tests/browser/board.test.mjs` opens `/boards/stoke` in
//! Chromium as a board member would, checks the figures under disclosure
//! control, posts new events and waits for the page to follow them live.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rotation_ledger::auth::token_digest;
use serde_json::{Value, json};

use crate::support::{
    binary, employee_registered, employer_enrolled, event, free_port, partnership_registered,
    person_event, release_started, rotation_agreed, substitution_started, uuid,
};
use crate::tools;

const BOARD_TOKEN: &str = "board-token-of-stoke-for-the-browser-test";
const PUBLISHER_TOKEN: &str = "publisher-token-of-stoke-for-the-browser-test";

/// How long the server may take to start or to fold the history.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long the browser script may run; its own waits are much shorter.
const BROWSER_WITHIN: Duration = Duration::from_secs(180);

#[test]
fn board_page_shows_protected_figures_and_follows_new_events() {
    let node_modules = tools::node_modules();
    let chromium = tools::chromium();
    let server = Server::start();

    let mut last_position = 0;
    for batch in [setup(), jobseekers(20..32), journeys()] {
        last_position = server.post(&batch);
    }
    let dashboard = server.dashboard_at(last_position);
    // The figures the page must show, checked in the JSON first so that a
    // failure says whether the server or the page is wrong. Twelve people
    // referred make the first release of their table: 12 perturbed under
    // this secret's cell key, then rounded to 10.
    assert_eq!(
        dashboard["totals"]["jobseekers_referred"],
        json!(10),
        "{dashboard}"
    );
    assert!(dashboard["releases"]["jobseekers_referred"].is_object());
    // One placement is too few for its table to be released at all.
    assert_eq!(
        dashboard["totals"]["jobseekers_placed"],
        Value::Null,
        "{dashboard}"
    );
    assert_eq!(dashboard["releases"]["jobseekers_placed"], Value::Null);
    // The one exception is a count of 1 for its rule and month: hidden,
    // and nothing names the rotation or the substitution.
    let flags = dashboard["flags"].as_array().expect("a list of counts");
    assert!(
        flags
            .iter()
            .all(|f| f.get("rotation").is_none() && f.get("message").is_none()),
        "{dashboard}"
    );
    let hour_for_hour = flags
        .iter()
        .find(|f| f["rule"] == "hour_for_hour")
        .expect("the rule is counted");
    assert_eq!(hour_for_hour["count"], Value::Null, "{dashboard}");

    let expect = json!({
        // Zeros of tables that never counted anything stay 0; the tables
        // of one placement and one release are not released yet.
        "tiles": {
            "jobseekers_referred": "10",
            "jobseekers_placed": "Hidden",
            "substitutes_into_work": "0",
            "releases_started": "Hidden",
            "training_completed": "0",
            "progressions": "0",
        },
        "suppressed": [
            "/totals/preparation_completed",
            "/totals/releases_active",
            "/by_group/sex/female/referred",
            "/by_group/sex/male/referred",
        ],
        "flags": {"hour_for_hour": "hidden"},
        // No exception in detail for a board token: neither the rotation
        // nor the substitution appears anywhere on the page.
        "forbidden_text": [uuid(100), uuid(300)],
        // Twelve more referrals release the table anew: 24, perturbed
        // under this secret and rounded, is shown as 20.
        "live_events": jobseekers(40..52),
        "live_tiles": {"jobseekers_referred": "20"},
    });

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output/board.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/board.test.mjs");
    let mut browser = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &node_modules)
        .env("CHROMIUM", &chromium)
        .env("BOARD_BASE", format!("http://{}", server.address))
        .env("BOARD_SLUG", "stoke")
        .env("BOARD_TOKEN", BOARD_TOKEN)
        .env("PUBLISHER_TOKEN", PUBLISHER_TOKEN)
        .env("BOARD_EXPECT", expect.to_string())
        .env("SCREENSHOT", &screenshot)
        .spawn()
        .expect("node runs (Node.js 18 or later must be on PATH)");
    let status = wait_for_exit(&mut browser, BROWSER_WITHIN);
    assert!(
        status == Some(0),
        "the board page test failed (exit {status:?}); screenshot at {}\nserver log:\n{}",
        screenshot.display(),
        server.log()
    );
}

/// The partnership, an employer in health and social work (SIC Q), one of
/// its employees and a rotation.
fn setup() -> Vec<Value> {
    vec![
        partnership_registered(),
        employer_enrolled(1),
        employee_registered(10, 1),
        rotation_agreed(100, 1),
    ]
}

/// Jobseekers `ids` registered and referred; the first half female, the
/// rest male, all born in 1970.
fn jobseekers(ids: std::ops::Range<u128>) -> Vec<Value> {
    let middle = ids.start + (ids.end - ids.start) / 2;
    ids.flat_map(|n| {
        let sex = if n < middle { "female" } else { "male" };
        [
            event(
                "participant.registered",
                &format!("person/{}", uuid(n)),
                json!({"role": "jobseeker", "unemployed_since": "2024-06-01", "benefit": "universal_credit",
                       "profile": {"birth_year": 1970, "sex": sex}}),
            ),
            person_event(n, "jobseeker.referred", json!({"referred_by": "jobcentre"})),
        ]
    })
    .collect()
}

/// Eleven of the twelve jobseekers eligible, three prepared, and one
/// substitute working 20 hours a week for a 15-hour course: an hour for
/// hour exception.
fn journeys() -> Vec<Value> {
    let mut events: Vec<Value> = (20..32)
        .map(|n| {
            person_event(
                n,
                "jobseeker.eligibility_assessed",
                json!({"eligible": n != 31, "reasons": []}),
            )
        })
        .collect();
    for n in 20..23 {
        events.push(person_event(
            n,
            "jobseeker.preparation_started",
            json!({"provider": "Stoke College", "planned_weeks": 4}),
        ));
        events.push(person_event(
            n,
            "jobseeker.preparation_completed",
            json!({"provider": "Stoke College"}),
        ));
    }
    events.push(release_started(100, 200, 10));
    let mut substitution = substitution_started(100, 300, 20, &[200]);
    substitution["data"]["hours_per_week"] = json!(20);
    events.push(substitution);
    events
}

/// The `rotation-ledger serve` under test, killed on drop.
struct Server {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "[[tokens]]\nsha256 = \"{}\"\nrole = \"board\"\npartnerships = [\"stoke\"]\n\n\
                 [[tokens]]\nsha256 = \"{}\"\nrole = \"publisher\"\npartnerships = [\"stoke\"]\n",
                token_digest(BOARD_TOKEN),
                token_digest(PUBLISHER_TOKEN)
            ),
        )
        .expect("the configuration is written");
        // A fixed record-key secret, so that the perturbed figures are the
        // same on every run.
        let keys = dir.path().join("data").join("keys");
        fs::create_dir_all(&keys).expect("the keys folder is made");
        fs::write(
            keys.join("disclosure.key"),
            b"the browser test's own record-key secret",
        )
        .expect("the secret is written");
        let address = format!("127.0.0.1:{}", free_port());
        let log = fs::File::create(dir.path().join("server.log")).expect("a log file");
        let child = Command::new(binary())
            .arg("serve")
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .arg("--http")
            .arg(&address)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let mut server = Self {
            child,
            address,
            dir,
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status}:\n{}", self.log());
            }
            if let Ok((200, _)) = http(&self.address, "GET", "/healthz", None, None) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer /healthz within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Posts a batch as the publisher; every event must be accepted.
    /// Returns the position of the last.
    fn post(&self, batch: &[Value]) -> u64 {
        let body = Value::Array(batch.to_vec());
        let (status, answer) = http(
            &self.address,
            "POST",
            "/v1/events",
            Some(PUBLISHER_TOKEN),
            Some(&body),
        )
        .expect("POST /v1/events answers");
        assert_eq!(status, 200, "POST /v1/events: {answer}");
        let answer: Value = serde_json::from_str(&answer).expect("the receipts are JSON");
        let receipts = answer["results"].as_array().expect("a list of receipts");
        assert!(
            receipts.iter().all(|r| r["status"] == "accepted"),
            "{answer}"
        );
        receipts
            .iter()
            .filter_map(|r| r["position"].as_u64())
            .max()
            .expect("accepted events have positions")
    }

    /// The board's dashboard once it has folded `position`.
    fn dashboard_at(&self, position: u64) -> Value {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let answer = http(
                &self.address,
                "GET",
                "/v1/partnerships/stoke/dashboard",
                Some(BOARD_TOKEN),
                None,
            );
            if let Ok((200, body)) = &answer {
                let dashboard: Value = serde_json::from_str(body).expect("the dashboard is JSON");
                if dashboard["as_of"]["position"].as_u64() >= Some(position) {
                    return dashboard;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard did not reach position {position}: {answer:?}"
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit within `limit`, killing it otherwise; the
/// exit code, `None` if it was killed or ended by a signal.
fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("the child can be waited for") {
            Some(status) => return status.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => sleep(Duration::from_millis(200)),
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the body.
/// The test needs only this much of a client.
pub(crate) fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/cloudevents-batch+json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;

    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of the headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    let payload = &response[split + 4..];
    let payload = if head.contains("transfer-encoding: chunked") {
        dechunk(payload).ok_or_else(|| invalid("a malformed chunked body"))?
    } else {
        payload.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&payload).into_owned()))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let start = line_end + 2;
        out.extend_from_slice(rest.get(start..start + size)?);
        rest = rest.get(start + size + 2..)?;
    }
}
