//! The stricter HTTP rules of v1.1 (shared/PROTOCOL.md, "HTTP limits"): `Host`, the body
//! timeout, and dribbled requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
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
