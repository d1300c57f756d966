//! Request heads, bounded before hyper reads them, so that a request too
//! large to serve is answered with a problem body like every other error.
//!
//! hyper answers a request line longer than 64 KiB (a limit it does not
//! let anyone raise), a head larger than its buffer or one with too many
//! headers itself, with a 414 or 431 and an empty body, before any service
//! runs. [`HeadGuard`] sits between the socket and hyper and holds each
//! request head back until it is whole; a head within this module's limits
//! (all below hyper's) goes on to hyper as it came, and one beyond them
//! never reaches it: hyper sees the connection end there, and the guard
//! writes its own `application/problem+json` answer (414
//! `uri_too_long`, 431 `header_fields_too_large`, 400 `invalid_request`
//! for a head that is not HTTP/1.1) before closing.
//!
//! To know where the next head starts, the guard follows each request's
//! body by its framing (`Content-Length` or chunked), as hyper does.
//! Holding a head back costs no time: hyper cannot act on part of one.
//! The header timeout stays hyper's, which keeps running while the guard
//! waits for the rest of a head.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::AppError;

/// The longest request line (method, target and version) served. Every
/// route's URI is far shorter; the common limit of HTTP servers.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// The largest request head (request line and headers) served.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most header fields a request may carry (hyper's own default).
pub const MAX_HEADERS: usize = 100;

/// How long a refused connection is kept reading (and discarding) what its
/// client still sends after the answer, so that closing it does not reset
/// the connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(2);

/// The most bytes discarded while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// How many bytes the guard reads from the socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// A connection's bytes on their way to hyper, each head checked first.
pub struct HeadGuard<IO> {
    io: IO,
    /// Bytes read from the client that hyper has not taken yet.
    buffered: BytesMut,
    /// How many bytes at the start of `buffered` hyper may take.
    cleared: usize,
    /// Where the search for the end of the head in `buffered` goes on.
    searched: usize,
    framing: Framing,
    /// Set once a head was refused: hyper reads no more, and the answer is
    /// written when hyper closes the connection.
    refusal: Option<Refusal>,
}

/// What the next bytes from the client are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A request head, held back until whole.
    Head,
    /// So many bytes of a body with a `Content-Length`.
    Body(u64),
    /// A chunked body.
    Chunked(Chunk),
    /// Whatever follows a chunk size too large to follow (which hyper
    /// refuses) or the client's close: passed on as it comes.
    Unframed,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk's size line.
    Size { size: u64, extension: bool },
    /// So many bytes of chunk data.
    Data(u64),
    /// In the line break after a chunk's data.
    DataEnd,
    /// In the trailer, after the last chunk; `empty` while the line so far
    /// is empty.
    Trailer { empty: bool },
}

/// A refused head's answer, and how far closing has got.
struct Refusal {
    answer: bytes::Bytes,
    stage: Closing,
    linger: Pin<Box<tokio::time::Sleep>>,
    discarded: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Answering,
    Flushing,
    ShuttingDown,
    Lingering,
    Closed,
}

impl<IO> HeadGuard<IO> {
    pub fn new(io: IO) -> Self {
        Self {
            io,
            buffered: BytesMut::new(),
            cleared: 0,
            searched: 0,
            framing: Framing::Head,
            refusal: None,
        }
    }

    /// Follows the framing over the bytes buffered and not yet cleared;
    /// true if that cleared bytes for hyper or refused a head.
    fn follow(&mut self) -> bool {
        match self.framing {
            Framing::Head => self.follow_head(),
            Framing::Body(left) => {
                let take = left.min((self.buffered.len() - self.cleared) as u64);
                self.cleared += take as usize;
                self.framing = if take == left {
                    Framing::Head
                } else {
                    Framing::Body(left - take)
                };
                take > 0 || left == 0
            }
            Framing::Chunked(chunk) => self.follow_chunked(chunk),
            Framing::Unframed => {
                let more = self.buffered.len() > self.cleared;
                self.cleared = self.buffered.len();
                more
            }
        }
    }

    /// A head is held back from the start of `buffered` (hyper has taken
    /// everything before it) until it ends, then checked.
    fn follow_head(&mut self) -> bool {
        debug_assert_eq!(self.cleared, 0);
        let bytes = &self.buffered[..];
        // Empty lines before a request line are ignored, as RFC 9112 lets
        // a server do (hyper does too).
        let lead = bytes
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        let line_end = bytes[lead..].iter().position(|b| *b == b'\n');
        let line = line_end.unwrap_or(bytes.len() - lead);
        if line > MAX_REQUEST_LINE {
            self.refuse(AppError::uri_too_long(MAX_REQUEST_LINE));
            return true;
        }
        // Where the last search stopped, less what a line break cut in
        // two could have left unseen.
        let from = self.searched.saturating_sub(3).max(lead);
        let Some(end) = head_end(bytes, from) else {
            if bytes.len() > MAX_HEAD {
                self.refuse(AppError::header_fields_too_large(MAX_HEAD));
                return true;
            }
            self.searched = bytes.len();
            return false;
        };
        if end > MAX_HEAD {
            self.refuse(AppError::header_fields_too_large(MAX_HEAD));
            return true;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&bytes[..end]) {
            Ok(httparse::Status::Complete(_)) => match framing(request.headers) {
                Ok(framing) => self.framing = framing,
                Err(why) => {
                    self.refuse(AppError::invalid_request(why));
                    return true;
                }
            },
            Ok(httparse::Status::Partial) => self.framing = Framing::Unframed,
            Err(httparse::Error::TooManyHeaders) => {
                self.refuse(AppError::header_fields_too_large(MAX_HEAD));
                return true;
            }
            Err(error) => {
                self.refuse(AppError::invalid_request(format!(
                    "the request is not HTTP/1.1: {error}"
                )));
                return true;
            }
        }
        self.cleared = end;
        self.searched = 0;
        true
    }

    fn follow_chunked(&mut self, mut chunk: Chunk) -> bool {
        let start = self.cleared;
        while self.cleared < self.buffered.len() {
            if let Chunk::Data(left) = chunk {
                let take = left.min((self.buffered.len() - self.cleared) as u64);
                self.cleared += take as usize;
                chunk = if take == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - take)
                };
                continue;
            }
            let byte = self.buffered[self.cleared];
            self.cleared += 1;
            chunk = match (chunk, byte) {
                (Chunk::Size { size: 0, .. }, b'\n') => Chunk::Trailer { empty: true },
                (Chunk::Size { size, .. }, b'\n') => Chunk::Data(size),
                (
                    Chunk::Size {
                        size,
                        extension: false,
                    },
                    digit,
                ) if digit.is_ascii_hexdigit() => {
                    let value = u64::from((digit as char).to_digit(16).unwrap_or(0));
                    match size.checked_mul(16).and_then(|s| s.checked_add(value)) {
                        Some(size) => Chunk::Size {
                            size,
                            extension: false,
                        },
                        None => {
                            // hyper refuses such a size; what follows is
                            // no longer framed.
                            self.framing = Framing::Unframed;
                            self.cleared = self.buffered.len();
                            return true;
                        }
                    }
                }
                (Chunk::Size { size, .. }, _) => Chunk::Size {
                    size,
                    extension: true,
                },
                (Chunk::DataEnd, b'\n') => Chunk::Size {
                    size: 0,
                    extension: false,
                },
                (Chunk::DataEnd, _) => Chunk::DataEnd,
                (Chunk::Trailer { empty: true }, b'\n') => {
                    self.framing = Framing::Head;
                    return true;
                }
                (Chunk::Trailer { .. }, b'\n') => Chunk::Trailer { empty: true },
                (Chunk::Trailer { empty }, b'\r') => Chunk::Trailer { empty },
                (Chunk::Trailer { .. }, _) => Chunk::Trailer { empty: false },
                (Chunk::Data(_), _) => unreachable!("data is taken above"),
            };
        }
        self.framing = Framing::Chunked(chunk);
        self.cleared > start
    }

    fn refuse(&mut self, error: AppError) {
        tracing::debug!(status = %error.status(), "refusing a request head");
        self.refusal = Some(Refusal {
            answer: error.to_http1_close().into(),
            stage: Closing::Answering,
            linger: Box::pin(tokio::time::sleep(LINGER)),
            discarded: 0,
        });
        self.buffered.clear();
        self.cleared = 0;
    }
}

/// The length of the head at the start of `bytes` once it has ended (its
/// empty line included), searching for line breaks from `from`. Bare line
/// feeds end lines too, as httparse admits.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = bytes[at..].iter().position(|b| *b == b'\n') {
        let after = at + found + 1;
        match &bytes[after..] {
            [b'\n', ..] => return Some(after + 1),
            [b'\r', b'\n', ..] => return Some(after + 2),
            _ => at = after,
        }
    }
    None
}

/// A request's body framing from its headers, as hyper reads it: a
/// transfer coding ending in chunked, else a `Content-Length`, else none.
/// Framing hyper would refuse is refused here, with its reason.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, &'static str> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if let Some(coding) = named("transfer-encoding").next_back() {
        let chunked = coding
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return if chunked {
            Ok(Framing::Chunked(Chunk::Size {
                size: 0,
                extension: false,
            }))
        } else {
            Err("a request body's transfer coding must end with chunked")
        };
    }
    let lengths: Vec<String> = named("content-length").collect();
    match lengths.first().map(|l| l.trim().parse::<u64>()) {
        None | Some(Ok(0)) => Ok(Framing::Head),
        Some(Ok(length)) if lengths.iter().all(|l| l.trim() == lengths[0].trim()) => {
            Ok(Framing::Body(length))
        }
        Some(_) => Err("the request's Content-Length is not one number"),
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.cleared > 0 {
                let n = this.cleared.min(buf.remaining());
                buf.put_slice(&this.buffered[..n]);
                this.buffered.advance(n);
                this.cleared -= n;
                return Poll::Ready(Ok(()));
            }
            if this.refusal.is_some() {
                // To hyper, the connection ends here.
                return Poll::Ready(Ok(()));
            }
            if this.buffered.len() > this.cleared && this.follow() {
                continue;
            }
            let mut chunk = [0u8; READ_SIZE];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed: hyper gets what is left and judges it.
                this.cleared = this.buffered.len();
                this.framing = Framing::Unframed;
                if this.cleared == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.buffered.extend_from_slice(read.filled());
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// hyper closes the connection after the end the guard made: the
    /// refusal's answer is written first, and the client's unread bytes are
    /// drained for a while, so that it reads the answer rather than a reset.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(refusal) = this.refusal.as_mut() else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        loop {
            match refusal.stage {
                Closing::Answering => {
                    if refusal.answer.is_empty() {
                        refusal.stage = Closing::Flushing;
                        continue;
                    }
                    let n = ready!(Pin::new(&mut this.io).poll_write(cx, &refusal.answer))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    refusal.answer.advance(n);
                }
                Closing::Flushing => {
                    ready!(Pin::new(&mut this.io).poll_flush(cx))?;
                    refusal.stage = Closing::ShuttingDown;
                }
                Closing::ShuttingDown => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    refusal.stage = Closing::Lingering;
                }
                Closing::Lingering => {
                    if refusal.linger.as_mut().poll(cx).is_ready()
                        || refusal.discarded >= LINGER_BYTES
                    {
                        refusal.stage = Closing::Closed;
                        continue;
                    }
                    let mut chunk = [0u8; READ_SIZE];
                    let mut read = ReadBuf::new(&mut chunk);
                    match ready!(Pin::new(&mut this.io).poll_read(cx, &mut read)) {
                        Ok(()) if !read.filled().is_empty() => {
                            refusal.discarded += read.filled().len();
                        }
                        _ => refusal.stage = Closing::Closed,
                    }
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What hyper would read through the guard from `sent`, and the
    /// guard's answer, if it refused.
    async fn check(sent: &[u8]) -> (Vec<u8>, Option<String>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(sent).await.expect("sent");
        client_write.shutdown().await.expect("closed");
        let mut guard = HeadGuard::new(server);
        let mut passed = Vec::new();
        guard.read_to_end(&mut passed).await.expect("read");
        let refused = guard.refusal.is_some();
        guard.shutdown().await.expect("closed");
        drop(guard);
        let mut answer = Vec::new();
        client_read.read_to_end(&mut answer).await.expect("answer");
        (
            passed,
            refused.then(|| String::from_utf8_lossy(&answer).into_owned()),
        )
    }

    #[tokio::test]
    async fn requests_within_the_limits_pass_as_they_came() {
        let sent = b"\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /v1/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
            POST /v1/events HTTP/1.1\nTransfer-Encoding: chunked\n\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n\
            GET /v1/verify HTTP/1.1\r\n\r\n";
        let (passed, refusal) = check(sent).await;
        assert_eq!(refusal, None);
        assert_eq!(passed, sent);
    }

    #[tokio::test]
    async fn a_long_uri_after_a_body_is_refused_with_a_problem() {
        let mut sent = b"POST /v1/events HTTP/1.1\r\nContent-Length: 20000\r\n\r\n".to_vec();
        sent.extend(std::iter::repeat_n(b'x', 20_000));
        let first = sent.len();
        sent.extend(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000)).bytes());
        let (passed, refusal) = check(&sent).await;
        assert_eq!(
            passed,
            sent[..first],
            "the body passed, the long head did not"
        );
        let answer = refusal.expect("a refusal");
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("\"code\":\"uri_too_long\""), "{answer}");
    }

    #[tokio::test]
    async fn oversized_and_malformed_heads_are_refused_with_problems() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(MAX_HEAD));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        for (sent, status, code) in [
            (big.as_str(), "431", "header_fields_too_large"),
            (many.as_str(), "431", "header_fields_too_large"),
            ("GET / HTTP/9.9\r\n\r\n", "400", "invalid_request"),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
                "invalid_request",
            ),
        ] {
            let (passed, refusal) = check(sent.as_bytes()).await;
            assert_eq!(passed, b"");
            let answer = refusal.expect("a refusal");
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{answer}"
            );
            assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
        }
    }
}
