//! One HTTP connection: keep-alive, pipelining, timeouts, and the point where it upgrades.
//!
//! Requests are answered strictly in order, each written before more is read, so a client
//! that does not read its answers stops being read. A request head must complete within
//! `--header-timeout` of its first byte (or of the accept, for the first request), and its
//! body within `--header-timeout` of the head, else 408 and close; an idle keep-alive
//! connection closes after `--keepalive-timeout`. `HEAD` is served as `GET` without the body.
//! Any parse error is answered with its status and the connection closes, since the byte
//! stream can no longer be split into requests.
//!
//! This loop knows how to carry requests, not what they mean: the caller's [`Service`]
//! answers them and performs the handshake of an upgrade, and takes the stream back in an
//! [`Upgraded`]. So it depends on neither the REST API nor the WebSocket layer: `server`'s
//! `Service` joins them.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use crate::http::parse::{Limits, Parser};
use crate::http::{Request, Response, Stream};

/// A body in pieces is written whenever this much of it is ready.
const PIECE_WRITE: usize = 64 * 1024;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 8 * 1024;

/// The route that asks to switch protocols (`GET` only); every other request goes to the API.
const UPGRADE_PATH: &str = "/api/v1/ws";

/// A connection that switched protocols: the caller's handshake accepted it and the 101
/// response has been written.
pub(crate) struct Upgraded<A> {
    pub(crate) stream: Stream,
    /// Bytes the client sent after the request head: the first bytes of the new protocol.
    pub(crate) leftover: Vec<u8>,
    /// What the handshake accepted (for WebSocket, who the connection is).
    pub(crate) accepted: A,
}

/// What a connection serves: the answer to each request, and the handshake of the protocol
/// it may upgrade to.
pub(crate) trait Service {
    /// What an accepted handshake hands to the new protocol (for WebSocket, who it is).
    type Accepted;

    /// The answer to a request that does not upgrade.
    fn respond(&self, req: &Request) -> impl Future<Output = Response> + Send;

    /// Either what was accepted and the bytes of the 101 response, or the HTTP response to
    /// send instead, after which the connection stays HTTP.
    fn handshake(
        &self,
        req: &Request,
    ) -> impl std::future::Future<Output = Result<(Self::Accepted, Vec<u8>), Response>>;
}

/// The timing and size limits of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) max_body: usize,
    /// How long a request head may take from its first byte (the first: from the accept).
    pub(crate) header_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub(crate) keepalive_timeout: Duration,
}

/// Serves HTTP requests on `stream` until it closes, `shutdown` fires, or a `GET` to the
/// upgrade route passes the service's handshake; then returns the stream for the new
/// protocol. The loop's buffers are gone when this returns, so a long-lived upgraded
/// connection keeps none of them.
pub(crate) async fn serve<S: Service>(
    service: &S,
    conn_limits: ConnLimits,
    mut stream: Stream,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Upgraded<S::Accepted>> {
    let limits = Limits {
        max_body: conn_limits.max_body,
        ..Limits::default()
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut parser = Parser::default();
    // When the current request's first byte arrived; the first request's clock starts now.
    let mut head_started = Some(Instant::now());
    // When the current request's head was complete, while its body arrives.
    let mut body_started: Option<Instant> = None;
    loop {
        match parser.parse(&buf, &limits) {
            Ok(Some((mut req, used))) => {
                buf.drain(..used);
                head_started = (!buf.is_empty()).then(Instant::now);
                body_started = None;
                if req.path == UPGRADE_PATH && req.method == "GET" {
                    match service.handshake(&req).await {
                        Ok((accepted, reply)) => {
                            stream.write_all(&reply).await.ok()?;
                            // An empty buffer may still hold capacity; don't carry it along.
                            let leftover = if buf.is_empty() { Vec::new() } else { buf };
                            return Some(Upgraded {
                                stream,
                                leftover,
                                accepted,
                            });
                        }
                        Err(resp) => {
                            if !respond(&mut stream, &mut out, &resp, req.keep_alive, true).await {
                                return None;
                            }
                            continue;
                        }
                    }
                }
                // HEAD is answered wherever GET is: the GET answer's status and headers, with
                // the Content-Length of its body, and no body.
                let head = req.method == "HEAD";
                if head {
                    req.method = "GET".to_owned();
                }
                let resp = service.respond(&req).await;
                if !respond(&mut stream, &mut out, &resp, req.keep_alive, !head).await {
                    return None;
                }
            }
            Ok(None) => {
                if parser.in_body() && body_started.is_none() {
                    body_started = Some(Instant::now());
                }
                let deadline = match (body_started, head_started) {
                    (Some(t), _) | (None, Some(t)) => t + conn_limits.header_timeout,
                    (None, None) => Instant::now() + conn_limits.keepalive_timeout,
                };
                let read = tokio::select! {
                    r = timeout_at(deadline, read_some(&mut stream, &mut buf)) => r,
                    _ = shutdown.changed() => return None,
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return None,
                    Ok(Ok(_)) => {
                        if head_started.is_none() {
                            head_started = Some(Instant::now());
                        }
                    }
                    Err(_elapsed) => {
                        if head_started.is_some() {
                            let message = if parser.in_body() {
                                "the request body did not arrive in time"
                            } else {
                                "the request head did not arrive in time"
                            };
                            let resp = Response::error(408, "request_timeout", message, None);
                            respond(&mut stream, &mut out, &resp, false, true).await;
                        }
                        return None;
                    }
                }
            }
            Err(e) => {
                let resp = Response::error(e.status(), e.code(), &e.message(), None);
                respond(&mut stream, &mut out, &resp, false, true).await;
                return None;
            }
        }
    }
}

/// Waits for bytes and appends what is available to `buf`; `Ok(0)` at end of stream.
///
/// Reading through a stack chunk and appending only what arrived keeps `buf` the size of the
/// request: a connection that upgrades leaves no read buffer behind, and thousands of them
/// do not fragment the heap with freed 8 KiB blocks.
async fn read_some(stream: &mut Stream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match try_read_into(stream, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn try_read_into(stream: &mut Stream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Writes one response, with its body unless it answers a `HEAD`; false when the connection
/// should end.
async fn respond(
    stream: &mut Stream,
    out: &mut Vec<u8>,
    resp: &Response,
    keep_alive: bool,
    with_body: bool,
) -> bool {
    out.clear();
    resp.encode(keep_alive, with_body, out);
    if let Some(pieces) = resp.pieces.as_ref().filter(|_| with_body) {
        // Each piece is put together just before it is written, after the head and the
        // piece before it are: a client that went away fails a write and costs no more.
        let mut i = 0;
        while pieces.write_piece(i, out) {
            i += 1;
            if out.len() >= PIECE_WRITE {
                if stream.write_all(out).await.is_err() {
                    return false;
                }
                out.clear();
            }
        }
    }
    if stream.write_all(out).await.is_err() {
        return false;
    }
    if !keep_alive || resp.close {
        let _ = stream.shutdown().await;
        return false;
    }
    if out.capacity() > 64 * 1024 {
        *out = Vec::new();
    }
    true
}
