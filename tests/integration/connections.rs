//! Stalled clients cannot hold the server: `serve` times out slow request
//! headers, serves a bounded number of connections, and stops within its
//! drain period after SIGTERM whatever its clients do.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use serde_json::Value;

use crate::support::{admin_config, serve_listening};

/// The start of a request whose headers never end.
const HALF_SENT: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nX-Slow: ";

/// A `serve` of an empty ledger with the given `[limits]`.
struct Serve {
    child: Child,
    addr: String,
    _data: tempfile::TempDir,
}

impl Serve {
    async fn start(limits: &str) -> Self {
        let data = tempfile::tempdir().expect("a temporary directory");
        let config = data.path().join("ledger.toml");
        std::fs::write(&config, admin_config(&format!("\n[limits]\n{limits}\n")))
            .expect("the configuration is written");
        let (child, addr) = serve_listening(&data.path().join("ledger"), &config).await;
        Self {
            child,
            addr,
            _data: data,
        }
    }

    /// A connection that has sent part of a request's headers.
    async fn half_sent(&self) -> TcpStream {
        let mut stream = TcpStream::connect(&self.addr).await.expect("a connection");
        stream.write_all(HALF_SENT).await.expect("sent");
        stream
    }

    /// `GET /healthz`'s status line, or `None` if no answer came within
    /// `wait`.
    async fn healthz(&self, wait: Duration) -> Option<String> {
        let ask = async {
            let mut stream = TcpStream::connect(&self.addr).await.ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.ok()?;
            answer.lines().next().map(str::to_owned)
        };
        tokio::time::timeout(wait, ask).await.ok().flatten()
    }

    /// Everything the server answers to `request` sent on a connection of
    /// its own, up to its close.
    async fn answer_to(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(&self.addr).await.expect("a connection");
        stream.write_all(request).await.expect("sent");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes")
            .expect("the answer is read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("serve runs").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0_u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

/// Asserts that `answer` ends with one problem response of `status` and
/// `code`.
fn assert_last_problem(answer: &str, status: u16, code: &str) {
    let at = answer.rfind("HTTP/1.1 ").expect("a response");
    let (head, body) = answer[at..]
        .split_once("\r\n\r\n")
        .expect("a head and a body");
    assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).expect("a JSON problem body");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status, "{problem}");
}

/// Regression: a request hyper would not read (a URI over 64 KiB, headers
/// over its buffer) was answered 414 or 431 with an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_too_large_to_serve_get_problem_bodies() {
    let serve = Serve::start("").await;
    let long_uri = format!(
        "GET /v1/events?after={} HTTP/1.1\r\nHost: ledger\r\n\r\n",
        "1".repeat(100_000)
    );
    let answer = serve.answer_to(long_uri.as_bytes()).await;
    assert_last_problem(&answer, 414, "uri_too_long");

    let padding: String = (0..200)
        .map(|i| format!("X-Padding-{i}: {}\r\n", "p".repeat(1_000)))
        .collect();
    let big_headers = format!("GET /healthz HTTP/1.1\r\nHost: ledger\r\n{padding}\r\n");
    let answer = serve.answer_to(big_headers.as_bytes()).await;
    assert_last_problem(&answer, 431, "header_fields_too_large");

    let many: String = (0..150).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nHost: ledger\r\n{many}\r\n");
    let answer = serve.answer_to(many_headers.as_bytes()).await;
    assert_last_problem(&answer, 431, "header_fields_too_large");

    // On a kept-alive connection, after a request with a body: the first
    // is answered, the second refused.
    let pipelined = format!(
        "POST /v1/events HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer admin\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]{long_uri}"
    );
    let answer = serve.answer_to(pipelined.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert_last_problem(&answer, 414, "uri_too_long");

    assert_eq!(
        serve.healthz(Duration::from_secs(5)).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_timed_out() {
    let serve = Serve::start("header_timeout_secs = 2").await;
    let mut slow = serve.half_sent().await;
    let took = closed_within(&mut slow, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(1_500),
        "closed after {took:?}"
    );
    // The server itself goes on answering.
    assert_eq!(
        serve.healthz(Duration::from_secs(5)).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let serve = Serve::start("max_connections = 2\nheader_timeout_secs = 60").await;
    let first = serve.half_sent().await;
    let _second = serve.half_sent().await;
    assert_eq!(
        serve.healthz(Duration::from_secs(1)).await,
        None,
        "a third connection is not served while two are held"
    );
    drop(first);
    assert_eq!(
        serve.healthz(Duration::from_secs(5)).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

/// Regression: one half-sent request kept `serve` alive 40 s after
/// SIGTERM, until its client went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_keep_serve_alive_after_sigterm() {
    let mut serve = Serve::start("drain_secs = 2\nheader_timeout_secs = 60").await;
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(serve.half_sent().await);
    }
    // One whose headers arrived but whose body never ends.
    let mut body = TcpStream::connect(&serve.addr).await.expect("a connection");
    body.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer admin\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
    )
    .await
    .expect("sent");
    held.push(body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    serve.terminate();
    let status = tokio::time::timeout(Duration::from_secs(15), serve.child.wait())
        .await
        .expect("serve stops within its drain period after SIGTERM")
        .expect("its status");
    assert!(status.success(), "{status}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "stopped after {took:?}");
    drop(held);
}
