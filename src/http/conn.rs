//! One HTTP connection: keep-alive, pipelining, timeouts, and the hand-off to WebSocket.
//!
//! Requests are answered strictly in order. A request head must complete within
//! `--header-timeout` of its first byte (or of the accept, for the first request), else 408
//! and close; an idle keep-alive connection closes after `--keepalive-timeout`. Any parse
//! error is answered with its status and the connection closes, since the byte stream can no
//! longer be split into requests.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use super::parse::{self, Limits};
use super::Response;
use crate::chat::Core;
use crate::{api, ws};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 8 * 1024;

pub async fn serve(core: Arc<Core>, mut stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
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
                    match ws::handshake(&core, &req) {
                        Ok((auth, reply)) => {
                            if stream.write_all(&reply).await.is_err() {
                                return;
                            }
                            // Bytes the client sent after the head are WebSocket frames.
                            ws::session::run(core, stream, buf, auth, shutdown).await;
                            return;
                        }
                        Err(resp) => {
                            if !respond(&mut stream, &mut out, &resp, req.keep_alive).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
                let resp = api::handle(&core, &req).await;
                crate::metrics::Metrics::add(&core.metrics.http_requests_total, 1);
                if !respond(&mut stream, &mut out, &resp, req.keep_alive).await {
                    return;
                }
            }
            Ok(None) => {
                let deadline = match head_started {
                    Some(t) => t + core.cfg.header_timeout,
                    None => Instant::now() + core.cfg.keepalive_timeout,
                };
                buf.reserve(READ_CHUNK);
                let read = tokio::select! {
                    r = timeout_at(deadline, stream.read_buf(&mut buf)) => r,
                    _ = shutdown.changed() => return,
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
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
                        return;
                    }
                }
            }
            Err(e) => {
                let resp = Response::error(e.status(), e.code(), &e.message(), None);
                respond(&mut stream, &mut out, &resp, false).await;
                return;
            }
        }
    }
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
