//! The stricter HTTP rules of v1.1 (docs/PROTOCOL.md, "HTTP limits"): `Host`, `HEAD`, the
//! body timeout, dribbled requests, and a client that does not read its answers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` on a fresh connection; returns the answer and whether the server then closed.
async fn answer_and_close(addr: std::net::SocketAddr, bytes: &str) -> (Reply, bool) {
    let (reply, mut stream) = raw(addr, bytes.as_bytes().to_vec()).await;
    let reply = reply.expect("an answer");
    let closed = until_closed(&mut stream, WAIT).await.is_some();
    (reply, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_required_once_in_http_1_1() {
    let s = start(&[]).await;
    for (what, req) in [
        ("no host", "GET /healthz HTTP/1.1\r\n\r\n"),
        (
            "two hosts",
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        ),
        (
            "two hosts, other case",
            "GET /healthz HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n",
        ),
        (
            "two hosts in HTTP/1.0",
            "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    ] {
        let (reply, closed) = answer_and_close(s.addr, req).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "bad_request".into()),
            "{what}"
        );
        assert!(closed, "{what}: still open");
    }
    // HTTP/1.0 predates Host (RFC 9112 §3.2): a 1.0 request without it is served.
    let (reply, _) = answer_and_close(s.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        get(s.addr, "/healthz", None).await.status,
        200,
        "served after"
    );
    s.stop().await;
}

/// A request sent a byte at a time, within the head timeout, is served like any other; so is
/// the next one on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_request_is_served() {
    let s = start(&[]).await;
    let body = json!({ "username": "dribbler", "password": PASSWORD }).to_string();
    let req = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\nContent-Length: {}\r\n\r\n{body}",
        "p".repeat(4000),
        body.len()
    );
    let mut c = KeepAlive::open(s.addr).await;
    c.stream.set_nodelay(true).unwrap();
    for b in req.bytes() {
        c.stream.write_all(&[b]).await.unwrap();
    }
    let reply = read_reply(&mut c.stream, &mut c.buf)
        .await
        .expect("an answer");
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    let next = c.ask("GET", "/healthz", None).await.expect("next answer");
    assert_eq!(next.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_a_close() {
    let s = start(&["--header-timeout", "1"]).await;
    let began = Instant::now();
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let body = json!({ "username": "late", "password": PASSWORD }).to_string();
    let head = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..5]).await.unwrap();
    let reply = read_reply(&mut slow, &mut Vec::new())
        .await
        .expect("a 408 answer, not a silent close");
    assert_eq!(
        (reply.status, reply.code()),
        (408, "request_timeout".into())
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    assert!(
        until_closed(&mut slow, WAIT).await.is_some(),
        "still open after 408"
    );
    assert_eq!(get(s.addr, "/healthz", None).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_wherever_get_is_without_a_body() {
    let s = start(&[]).await;
    let t = user(s.addr, "hana").await;
    let mut c = KeepAlive::open(s.addr).await;
    for (path, token) in [
        ("/healthz", None),
        ("/api/v1/me", Some(t.as_str())),
        ("/api/v1/me", None),
        ("/api/v1/rooms", Some(t.as_str())),
        ("/no/such/path", None),
    ] {
        let get = c.ask("GET", path, token).await.expect("GET answer");
        let req = request_bytes("HEAD", path, token, None);
        c.stream.write_all(req.as_bytes()).await.unwrap();
        // The HEAD answer's head only: its Content-Length is the GET body's, and no body
        // follows, so the next answer on the connection starts right after the blank line.
        let head = loop {
            if let Some(end) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break String::from_utf8_lossy(&c.buf.drain(..end + 4).collect::<Vec<_>>())
                    .to_string();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, c.stream.read(&mut chunk))
                .await
                .expect("HEAD answer in time")
                .unwrap();
            assert!(n > 0, "closed after HEAD {path}");
            c.buf.extend_from_slice(&chunk[..n]);
        };
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(status, get.status, "HEAD {path}: {head}");
        let length = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        });
        assert_eq!(
            length,
            Some(get.body.len().to_string()),
            "HEAD {path}: {head}"
        );
        assert!(!get.body.is_empty());
        let after = c
            .ask("GET", "/healthz", None)
            .await
            .expect("served after HEAD");
        assert_eq!(after.status, 200, "HEAD {path} left a body behind");
    }
    s.stop().await;
}

/// A client that pipelines requests but never reads the answers is not read any further
/// once its answers fill the socket: the server does not buffer answers without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_not_read() {
    let s = start(&[]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut c = socket.connect(s.addr).await.unwrap();
    let req = request_bytes("GET", "/metrics", None, None).into_bytes();
    // Writes stop completing once the server stops reading: the kernel buffers fill.
    let mut sent = 0usize;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_secs(2), c.write_all(&req)).await {
            Err(_) => break true,
            Ok(r) => r.unwrap(),
        }
        sent += req.len();
        if sent > 64 * 1024 * 1024 {
            break false;
        }
    };
    assert!(
        stalled,
        "the server read {sent} bytes of requests nobody read answers to"
    );
    // Others are served meanwhile.
    assert_eq!(get(s.addr, "/healthz", None).await.status, 200);
    s.stop().await;
}
