//! The client of a running server on this machine, for the verbs that
//! find its store held (`crate::live`): they read `serve.json` and ask
//! the server with its local credential, through the routes every other
//! caller uses (`/v1/verify`, `/v1/events`, `/v1/rejections`,
//! `/v1/checkpoint/key`, `/v1/proofs/inclusion`) and the operator's own (`/v1/stats`, `/v1/backup`).
//!
//! One HTTP/1.1 connection a request, on loopback: the verbs make few
//! requests, and pages are large.

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, header};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::chain::Verification;
use crate::ledger::{BackupReport, RejectionRecord, Stats};
use crate::live::ServeFile;

/// The largest answer the client reads: a page of events at the largest
/// limit stays well below it.
const MAX_ANSWER: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "the server of serve.json ({url}) does not answer: {source}. If it was stopped, \
         the store is held by another process"
    )]
    Connect { url: String, source: std::io::Error },
    #[error("the server at {url} failed to answer: {message}")]
    Exchange { url: String, message: String },
    #[error("the server at {url} answered {status}: {detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the server at {url} answered what this version does not read: {source}")]
    Unreadable {
        url: String,
        source: serde_json::Error,
    },
}

/// A running server, as its `serve.json` describes it.
#[derive(Debug, Clone)]
pub struct LocalServer {
    file: ServeFile,
}

/// A page of events, each as the server holds it (RFC 8785).
#[derive(Debug, serde::Deserialize)]
pub struct EventsPage {
    pub events: Vec<Box<RawValue>>,
    pub next_after: u64,
    /// The durable head when the page was read.
    pub head_position: u64,
}

/// A page of rejections.
#[derive(Debug, serde::Deserialize)]
pub struct RejectionsPage {
    pub rejections: Vec<RejectionRecord>,
    pub next_after: u64,
}

impl LocalServer {
    pub fn new(file: ServeFile) -> Self {
        Self { file }
    }

    /// Where the server listens.
    pub fn url(&self) -> &str {
        &self.file.url
    }

    /// `GET /v1/verify`.
    pub async fn verify(&self) -> Result<Verification, LocalError> {
        self.json(Method::GET, "/v1/verify", None).await
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<Stats, LocalError> {
        self.json(Method::GET, "/v1/stats", None).await
    }

    /// `GET /v1/events?after=&limit=`.
    pub async fn events(&self, after: u64, limit: usize) -> Result<EventsPage, LocalError> {
        let path = format!("/v1/events?after={after}&limit={limit}");
        self.json(Method::GET, &path, None).await
    }

    /// `GET /v1/rejections?after=&limit=`.
    pub async fn rejections(&self, after: u64, limit: usize) -> Result<RejectionsPage, LocalError> {
        let path = format!("/v1/rejections?after={after}&limit={limit}");
        self.json(Method::GET, &path, None).await
    }

    /// `GET /v1/checkpoint/key`: the verifier key, a line of text.
    pub async fn checkpoint_key(&self) -> Result<String, LocalError> {
        let (status, bytes) = self
            .request(Method::GET, "/v1/checkpoint/key", None)
            .await?;
        if status != 200 {
            return Err(self.refused(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET /v1/proofs/inclusion?position=&size=`.
    pub async fn inclusion_proof(
        &self,
        position: u64,
        size: Option<u64>,
    ) -> Result<serde_json::Value, LocalError> {
        let mut path = format!("/v1/proofs/inclusion?position={position}");
        if let Some(size) = size {
            path.push_str(&format!("&size={size}"));
        }
        self.json(Method::GET, &path, None).await
    }

    /// `POST /v1/backup`: the server copies its ledger into `out`, an
    /// absolute path.
    pub async fn backup(&self, out: &Path) -> Result<BackupReport, LocalError> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "out": out })).expect("a request serialises");
        self.json(Method::POST, "/v1/backup", Some(body)).await
    }

    /// One request, its answer read as `T`; a problem answer is an error
    /// carrying its detail.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, LocalError> {
        let (status, bytes) = self.request(method, path, body).await?;
        if status != 200 {
            return Err(self.refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| LocalError::Unreadable {
            url: self.file.url.clone(),
            source,
        })
    }

    /// A problem answer as an error carrying its detail.
    fn refused(&self, status: u16, bytes: &[u8]) -> LocalError {
        let detail = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|problem| problem.get("detail")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
        LocalError::Refused {
            url: self.file.url.clone(),
            status,
            detail,
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), LocalError> {
        let url = &self.file.url;
        let exchange = |message: String| LocalError::Exchange {
            url: url.clone(),
            message,
        };
        let stream = tokio::net::TcpStream::connect(self.file.addr)
            .await
            .map_err(|source| LocalError::Connect {
                url: url.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| exchange(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.file.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.file.token));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .map_err(|e| exchange(e.to_string()))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| exchange(e.to_string()))?;
        let status = answer.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(answer.into_body()), MAX_ANSWER)
            .await
            .map_err(|e| exchange(e.to_string()))?;
        Ok((status, bytes))
    }
}
