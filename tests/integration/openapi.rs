//! The OpenAPI description (contract section 12) against a real client:
//! `schemathesis` fuzzes every operation of a live server with an admin
//! token, and neither a server error nor an answer that breaks the
//! description may come back; the server must survive it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::*;
use crate::tools;

/// `GET path` over a fresh connection; the status line and the body.
async fn get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_and_the_server_survives() {
    let schemathesis = tools::schemathesis();
    let temp = TempLedger::new();
    scheme(&temp).await;
    let dir = temp.into_dir();
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut token) = (None, None);
    while addr.is_none() || token.is_none() {
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
    }
    let (addr, token) = (addr.unwrap(), token.unwrap());

    // Anyone may read the description, and it is the one kept in docs/.
    let (status, body) = get(&addr, "/v1/openapi.json", None).await;
    assert!(status.contains(" 200 "), "{status}");
    let served: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served, kept, "the served description is docs/openapi.json");

    // The live tail never ends, which a fuzzer cannot wait for; it is
    // tested in `http`.
    let run = tokio::process::Command::new(schemathesis)
        .args(["run", &format!("http://{addr}/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--exclude-path", "/v1/events/live"])
        // Its cache and reports go to a folder of the test's own.
        .current_dir(dir.path())
        .args([
            "--max-examples",
            "25",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis within 10 minutes")
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");

    let (status, _) = get(&addr, "/healthz", None).await;
    assert!(status.contains(" 200 "), "the server survives: {status}");
    child.kill().await.ok();
}
