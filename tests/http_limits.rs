//! The HTTP layer's limits and connection handling against a real server: each limit of
//! docs/PROTOCOL.md with its exact status while other clients keep being served, timeouts,
//! keep-alive and pipelining, and the connection caps.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `bad` on its own connection and checks that it gets `status` and a close, while a
/// well-behaved keep-alive client is served before and after and a new client is served too.
async fn refused_while_others_served(addr: std::net::SocketAddr, bad: Vec<u8>, status: u16) {
    let mut other = KeepAlive::open(addr).await;
    assert_eq!(
        other.ask("GET", "/healthz", None).await.unwrap().status,
        200
    );

    let (reply, mut stream) = raw(addr, bad).await;
    let reply = reply.unwrap_or_else(|| panic!("no {status} answer: the connection just ended"));
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"].is_string(),
        "error shape: {body}"
    );
    assert_eq!(reply.header("connection"), Some("close"));
    // The byte stream can no longer be split into requests, so the server hangs up.
    assert!(
        until_closed(&mut stream, WAIT).await.is_some(),
        "still open"
    );

    let again = other.ask("GET", "/healthz", None).await;
    assert_eq!(
        again.map(|r| r.status),
        Some(200),
        "keep-alive client served after"
    );
    assert_eq!(
        get(addr, "/healthz", None).await.status,
        200,
        "new client served after"
    );
}

/// A GET of `/healthz`-like path whose request line is exactly `len` bytes.
fn request_line(len: usize) -> Vec<u8> {
    let path = format!("/{}", "a".repeat(len - "GET / HTTP/1.1".len()));
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// A GET of `/healthz` whose header block (every header line with its CRLF) is `len` bytes.
fn header_block(len: usize) -> Vec<u8> {
    let pad = "a".repeat(len - "Host: t\r\nX-Pad: \r\n".len());
    format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n").into_bytes()
}

fn many_headers(n: usize) -> Vec<u8> {
    // `Host` is one of the `n`.
    let lines: String = (1..n).map(|i| format!("X-H{i}: v\r\n")).collect();
    format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{lines}\r\n").into_bytes()
}

/// A registration whose JSON body is padded with spaces to exactly `len` bytes.
fn register_with_body(name: &str, len: usize) -> Vec<u8> {
    let mut body = json!({ "username": name, "password": PASSWORD }).to_string();
    body.push_str(&" ".repeat(len - body.len()));
    format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_line_over_8_kib_gets_414() {
    let s = start(&[]).await;
    // At the limit the request is routed like any other.
    let (r, _) = raw(s.addr, request_line(8192)).await;
    assert_eq!(r.expect("an answer").status, 404);
    for len in [8193, 64 * 1024, 1 << 20] {
        refused_while_others_served(s.addr, request_line(len), 414).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_block_over_16_kib_gets_431() {
    let s = start(&[]).await;
    let (r, _) = raw(s.addr, header_block(16 * 1024)).await;
    assert_eq!(r.expect("an answer").status, 200);
    for len in [16 * 1024 + 1, 256 * 1024] {
        refused_while_others_served(s.addr, header_block(len), 431).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_64_headers_get_431() {
    let s = start(&[]).await;
    let (r, _) = raw(s.addr, many_headers(64)).await;
    assert_eq!(r.expect("an answer").status, 200);
    refused_while_others_served(s.addr, many_headers(65), 431).await;
    refused_while_others_served(s.addr, many_headers(1000), 431).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_bytes_gets_413() {
    let s = start(&["--max-body-bytes", "1024"]).await;
    let (r, _) = raw(s.addr, register_with_body("atlimit", 1024)).await;
    assert_eq!(r.expect("an answer").status, 201);
    for len in [1025, 256 * 1024] {
        refused_while_others_served(s.addr, register_with_body("toolarge", len), 413).await;
    }
    // None of the refused bodies was acted on.
    let t = user(s.addr, "reader").await;
    let r = get(s.addr, "/api/v1/users/toolarge", Some(&t)).await;
    assert_eq!(r.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_gets_400() {
    let s = start(&[]).await;
    for te in ["chunked", "gzip, chunked", "identity"] {
        let req = format!(
            "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n"
        );
        refused_while_others_served(s.addr, req.into_bytes(), 400).await;
    }
    // The order of the two headers does not matter.
    let req =
        "POST /api/v1/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n";
    refused_while_others_served(s.addr, req.into(), 400).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let s = start(&[]).await;
    let cases: [&[u8]; 9] = [
        b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"POST /api/v1/login HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/v1/login HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /api/v1/login HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ];
    for bad in cases {
        let (reply, mut stream) = raw(s.addr, bad.to_vec()).await;
        let reply =
            reply.unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(bad)));
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(reply.code(), "bad_request");
        assert!(until_closed(&mut stream, WAIT).await.is_some());
    }
    refused_while_others_served(s.addr, cases[0].to_vec(), 400).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_head_gets_408_and_a_close_while_others_are_served() {
    let s = start(&["--header-timeout", "1"]).await;
    let began = Instant::now();
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();

    // Meanwhile another client is served in full, and the slow one is still waiting.
    let mut other = KeepAlive::open(s.addr).await;
    for _ in 0..3 {
        assert_eq!(
            other.ask("GET", "/healthz", None).await.unwrap().status,
            200
        );
    }
    let mut probe = [0u8; 1];
    assert!(
        matches!(slow.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow client was answered before its timeout"
    );

    let reply = read_reply(&mut slow, &mut Vec::new())
        .await
        .expect("a 408 answer");
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(reply.json()["error"]["code"].is_string());
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    assert!(
        until_closed(&mut slow, WAIT).await.is_some(),
        "still open after 408"
    );
    // The rest of its head, too late, changes nothing; others are still served.
    let _ = slow.write_all(b"\r\n").await;
    assert_eq!(
        other.ask("GET", "/healthz", None).await.unwrap().status,
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bytes_does_not_extend_the_header_timeout() {
    let s = start(&["--header-timeout", "1"]).await;
    let began = Instant::now();
    let slow = TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = slow.into_split();
    // One byte every 100 ms of a head that would take minutes to finish.
    let trickle = tokio::spawn(async move {
        let head = format!("GET /healthz HTTP/1.1\r\nX-Slow: {}", "a".repeat(10_000));
        for b in head.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut rd, &mut chunk))
            .await
        {
            Err(_) => panic!("no answer while trickling"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
    trickle.abort();
    let elapsed = began.elapsed();
    let reply = parse_reply(&mut got).expect("a 408 answer before the close");
    assert_eq!(reply.status, 408);
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "the deadline moved: {elapsed:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let s = start(&["--header-timeout", "1"]).await;
    let began = Instant::now();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(get(s.addr, "/healthz", None).await.status, 200);
    assert!(
        until_closed(&mut silent, WAIT).await.is_some(),
        "still open"
    );
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_keepalive_timeout() {
    // A header timeout far longer, so only the keep-alive timeout can explain the close.
    let s = start(&["--keepalive-timeout", "1", "--header-timeout", "30"]).await;
    let mut conn = KeepAlive::open(s.addr).await;
    for _ in 0..3 {
        let r = conn.ask("GET", "/healthz", None).await.expect("kept alive");
        assert_eq!(r.status, 200);
        assert_ne!(r.header("connection"), Some("close"));
    }
    let idle_from = Instant::now();
    let rest = until_closed(&mut conn.stream, WAIT)
        .await
        .expect("idle connection still open");
    let idle = idle_from.elapsed();
    assert!(
        rest.is_empty(),
        "an idle close sends nothing: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(idle >= Duration::from_millis(900), "{idle:?}");
    assert!(idle < Duration::from_secs(10), "{idle:?}");
    // A busy connection is not cut by it: requests spaced well inside the timeout.
    let mut busy = KeepAlive::open(s.addr).await;
    for _ in 0..6 {
        assert_eq!(
            busy.ask("GET", "/healthz", None).await.map(|r| r.status),
            Some(200)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let s = start(&[]).await;
    let batch = |name: &str| {
        let creds = json!({ "username": name, "password": PASSWORD });
        [
            request_bytes("POST", "/api/v1/register", None, Some(&creds)),
            request_bytes("POST", "/api/v1/login", None, Some(&creds)),
            request_bytes("GET", "/api/v1/me", None, None),
            request_bytes("GET", "/healthz", None, None),
            request_bytes("GET", "/nope", None, None),
            request_bytes("DELETE", "/healthz", None, None),
            request_bytes("POST", "/api/v1/register", None, Some(&creds)),
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(),
        ]
        .concat()
    };
    let want = [201, 200, 401, 200, 404, 405, 409, 200];

    // All in one write, then the same bytes split at awkward places. Each round registers a
    // fresh name so the answers stay the same.
    for chunk in [usize::MAX, 7, 1] {
        let name = format!("piper{}", chunk % 1000);
        let bytes = batch(&name).into_bytes();
        let stream = TcpStream::connect(s.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(chunk) {
                wr.write_all(piece).await.unwrap();
            }
            wr
        });
        let mut stream = rd.reunite(writer.await.unwrap()).unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in want {
            let r = read_reply(&mut stream, &mut buf).await.expect("a response");
            got.push(r);
        }
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, want, "chunk {chunk}");
        assert_eq!(got[0].json()["username"], name);
        assert!(got[1].json()["token"].is_string());
        assert_eq!(got[3].json(), json!({ "status": "ok" }));
        assert_eq!(got[6].code(), "username_taken");
        // The last asked to close, and nothing follows it.
        assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
        assert_eq!(until_closed(&mut stream, WAIT).await, Some(Vec::new()));
    }
    s.stop().await;
}

/// Opens a connection from `ip` and proves it is served, keeping it open.
async fn served_from(addr: std::net::SocketAddr, ip: &str) -> KeepAlive {
    let mut c = KeepAlive::over(connect_from(addr, ip).await);
    let r = c.ask("GET", "/healthz", None).await;
    assert_eq!(
        r.map(|r| r.status),
        Some(200),
        "a connection from {ip} is served"
    );
    c
}

/// Opens a connection from `ip` and expects the 503 refusal and a close.
async fn refused_from(addr: std::net::SocketAddr, ip: &str) {
    let stream = connect_from(addr, ip).await;
    let req = request_bytes("GET", "/healthz", None, None).into_bytes();
    let (reply, mut stream) = raw_on(stream, req).await;
    let reply = reply.expect("a 503 answer, not a bare close");
    assert_eq!(reply.status, 503);
    assert!(reply.json()["error"]["code"].is_string());
    assert!(until_closed(&mut stream, WAIT).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_cap_refuses_a_third_connection_from_one_address() {
    let s = start(&["--max-connections-per-ip", "2"]).await;
    let mut first = served_from(s.addr, "127.0.0.1").await;
    let mut second = served_from(s.addr, "127.0.0.1").await;
    refused_from(s.addr, "127.0.0.1").await;
    // Another address is not affected, and the first two still work.
    let _elsewhere = served_from(s.addr, "127.0.0.2").await;
    for c in [&mut first, &mut second] {
        assert_eq!(
            c.ask("GET", "/healthz", None).await.map(|r| r.status),
            Some(200)
        );
    }
    // Closing one frees its place.
    drop(first);
    let addr = s.addr;
    let freed = eventually(|| async move {
        let mut c = KeepAlive::over(connect_from(addr, "127.0.0.1").await);
        c.ask("GET", "/healthz", None).await.map(|r| r.status) == Some(200)
    })
    .await;
    assert!(freed, "a closed connection still counts against the cap");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_refuses_connections_beyond_it() {
    let s = start(&["--max-connections", "2", "--max-connections-per-ip", "0"]).await;
    let mut first = served_from(s.addr, "127.0.0.1").await;
    let mut second = served_from(s.addr, "127.0.0.2").await;
    refused_from(s.addr, "127.0.0.3").await;
    refused_from(s.addr, "127.0.0.1").await;
    for c in [&mut first, &mut second] {
        assert_eq!(
            c.ask("GET", "/healthz", None).await.map(|r| r.status),
            Some(200)
        );
    }
    drop(second);
    let addr = s.addr;
    let freed = eventually(|| async move {
        let mut c = KeepAlive::over(connect_from(addr, "127.0.0.3").await);
        c.ask("GET", "/healthz", None).await.map(|r| r.status) == Some(200)
    })
    .await;
    assert!(freed, "a closed connection still counts against the cap");
    s.stop().await;
}

/// A burst of connects larger than tokio's default backlog (128) is queued by the kernel, not
/// dropped: with a short backlog the extra SYNs are dropped and each such client waits a
/// second or more for its retry. Nobody accepts here, so only the backlog holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connects_waits_in_the_backlog_not_in_syn_retries() {
    let listener = parley::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for i in 0..1000 {
        let c = tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr)).await;
        let c = c.unwrap_or_else(|_| panic!("connect {i} stalled: the backlog is full"));
        held.push(c.unwrap());
    }
    drop(listener);
}
