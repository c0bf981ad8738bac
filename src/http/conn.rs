//! One HTTP connection: keep-alive, pipelining, timeouts, and the hand-off to WebSocket.
//!
//! Requests are answered strictly in order. A request head must complete within
//! `--header-timeout` of its first byte (or of the accept, for the first request), else 408
//! and close; an idle keep-alive connection closes after `--keepalive-timeout`. Any parse
//! error is answered with its status and the connection closes, since the byte stream can no
//! longer be split into requests.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use super::parse::{self, Limits};
use super::Response;
use crate::chat::Core;
use crate::{api, ws};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 8 * 1024;

/// An upgraded connection: who it is and the bytes that followed the request head.
struct Upgrade {
    stream: TcpStream,
    leftover: Vec<u8>,
    auth: crate::chat::Auth,
}

pub async fn serve(core: Arc<Core>, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    // The HTTP loop's buffers and request are gone before the WebSocket session starts, so a
    // long-lived connection keeps none of them.
    if let Some(up) = serve_http(&core, stream, shutdown.clone()).await {
        let leftover = if up.leftover.is_empty() {
            Vec::new()
        } else {
            up.leftover
        };
        ws::session::run(core, up.stream, leftover, up.auth, shutdown).await;
    }
}

async fn serve_http(
    core: &Arc<Core>,
    mut stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Upgrade> {
    let limits = Limits {
        max_body: core.cfg.max_body_bytes,
        ..Limits::default()
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    // When the current request's first byte arrived; the first request's clock starts now.
    let mut head_started = Some(Instant::now());
    loop {
        match parse::parse(&buf, &limits) {
            Ok(Some((req, used))) => {
                buf.drain(..used);
                head_started = (!buf.is_empty()).then(Instant::now);
                if req.path == "/api/v1/ws" && req.method == "GET" {
                    match ws::handshake(core, &req) {
                        Ok((auth, reply)) => {
                            stream.write_all(&reply).await.ok()?;
                            // Bytes the client sent after the head are WebSocket frames.
                            return Some(Upgrade {
                                stream,
                                leftover: buf,
                                auth,
                            });
                        }
                        Err(resp) => {
                            if !respond(&mut stream, &mut out, &resp, req.keep_alive).await {
                                return None;
                            }
                            continue;
                        }
                    }
                }
                let resp = api::handle(core, &req).await;
                crate::metrics::Metrics::add(&core.metrics.http_requests_total, 1);
                if !respond(&mut stream, &mut out, &resp, req.keep_alive).await {
                    return None;
                }
            }
            Ok(None) => {
                let deadline = match head_started {
                    Some(t) => t + core.cfg.header_timeout,
                    None => Instant::now() + core.cfg.keepalive_timeout,
                };
                let read = tokio::select! {
                    r = timeout_at(deadline, read_some(&stream, &mut buf)) => r,
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
                        if head_started.is_some() && !parse::head_complete(&buf) {
                            let resp = Response::error(
                                408,
                                "request_timeout",
                                "the request head did not arrive in time",
                                None,
                            );
                            respond(&mut stream, &mut out, &resp, false).await;
                        }
                        return None;
                    }
                }
            }
            Err(e) => {
                let resp = Response::error(e.status(), e.code(), &e.message(), None);
                respond(&mut stream, &mut out, &resp, false).await;
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
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match try_read_into(stream, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn try_read_into(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Writes one response; false when the connection should end.
async fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: &Response,
    keep_alive: bool,
) -> bool {
    out.clear();
    resp.encode(keep_alive, out);
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
