//! `--trusted-proxy`: behind a listed proxy the client address is the last `X-Forwarded-For`
//! entry; anyone else's `X-Forwarded-For` is ignored.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Registers `name` from the loopback address `from`, with `forwarded` as X-Forwarded-For.
async fn register(addr: SocketAddr, from: &str, forwarded: Option<&str>, name: &str) -> u16 {
    let mut stream = connect_from(addr, from).await;
    let body = json!({ "username": name, "password": PASSWORD }).to_string();
    let xff = forwarded
        .map(|f| format!("X-Forwarded-For: {f}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: test\r\n{xff}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_reply(&mut stream, &mut Vec::new())
        .await
        .expect("a response")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_count_against_the_forwarded_address_only_behind_a_trusted_proxy() {
    let s = start(&[
        "--register-per-ip-per-hour",
        "2",
        "--trusted-proxy",
        "127.0.0.2",
    ])
    .await;
    let proxy = "127.0.0.2";
    // Behind the proxy: each forwarded client has its own budget; the last entry counts, so
    // a client cannot pick its address by sending an X-Forwarded-For of its own.
    assert_eq!(
        register(s.addr, proxy, Some("10.0.0.1"), "user-p1").await,
        201
    );
    assert_eq!(
        register(s.addr, proxy, Some("6.6.6.6, 10.0.0.1"), "user-p2").await,
        201
    );
    assert_eq!(
        register(s.addr, proxy, Some("7.7.7.7, 10.0.0.1"), "user-p3").await,
        429
    );
    assert_eq!(
        register(s.addr, proxy, Some("10.0.0.2"), "user-p4").await,
        201
    );
    assert_eq!(
        register(s.addr, proxy, Some("10.0.0.3"), "user-p5").await,
        201
    );
    // The proxy's own requests (no header) count as the proxy.
    assert_eq!(register(s.addr, proxy, None, "user-p6").await, 201);

    // Anyone else's X-Forwarded-For is ignored: 127.0.0.3 is counted as itself.
    let other = "127.0.0.3";
    assert_eq!(
        register(s.addr, other, Some("10.1.0.1"), "user-o1").await,
        201
    );
    assert_eq!(
        register(s.addr, other, Some("10.1.0.2"), "user-o2").await,
        201
    );
    assert_eq!(
        register(s.addr, other, Some("10.1.0.3"), "user-o3").await,
        429
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_capped_per_address_but_others_are() {
    let s = start(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxy",
        "127.0.0.2",
    ])
    .await;
    // Two open connections from the proxy are both served.
    let mut a = KeepAlive::over(connect_from(s.addr, "127.0.0.2").await);
    let mut b = KeepAlive::over(connect_from(s.addr, "127.0.0.2").await);
    for c in [&mut a, &mut b] {
        assert_eq!(c.ask("GET", "/healthz", None).await.unwrap().status, 200);
    }
    // From anywhere else, the second connection is refused.
    let mut c = KeepAlive::over(connect_from(s.addr, "127.0.0.3").await);
    assert_eq!(c.ask("GET", "/healthz", None).await.unwrap().status, 200);
    let r = request_from(s.addr, "127.0.0.3", "GET", "/healthz", None, None).await;
    assert_eq!((r.status, r.code().as_str()), (503, "too_many_connections"));
    s.stop().await;
}

/// Upgrades a connection from the proxy at `from` for the client `forwarded`; the status of
/// the answer (101 when it upgraded) and the connection, kept open.
async fn upgrade_via(
    addr: SocketAddr,
    from: &str,
    forwarded: &str,
    token: &str,
) -> (u16, Option<impl Sized>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let stream = connect_from(addr, from).await;
    let mut req = format!("ws://{addr}/api/v1/ws?token={token}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", forwarded.parse().unwrap());
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, resp)) => (resp.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (resp.status().as_u16(), None),
        Err(e) => panic!("upgrade: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_through_a_trusted_proxy_count_against_the_forwarded_address() {
    let s = start(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxy",
        "127.0.0.2",
    ])
    .await;
    // Registered and logged in from addresses of their own: with one connection per IP,
    // back-to-back requests from one address race the previous connection's release.
    let creds = json!({ "username": "alice", "password": PASSWORD });
    let post = |from, path| request_from(s.addr, from, "POST", path, None, Some(&creds));
    assert_eq!(post("127.0.0.3", "/api/v1/register").await.status, 201);
    let login = post("127.0.0.4", "/api/v1/login").await;
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_string();
    let (status, first) = upgrade_via(s.addr, "127.0.0.2", "10.0.0.1", &token).await;
    assert_eq!(status, 101);
    let (status, _) = upgrade_via(s.addr, "127.0.0.2", "10.0.0.1", &token).await;
    assert_eq!(status, 503, "a second WebSocket for 10.0.0.1");
    let (status, _other) = upgrade_via(s.addr, "127.0.0.2", "10.0.0.2", &token).await;
    assert_eq!(status, 101, "another client behind the same proxy");
    // When the first closes, 10.0.0.1 may connect again.
    drop(first);
    assert!(
        eventually(|| async {
            upgrade_via(s.addr, "127.0.0.2", "10.0.0.1", &token).await.0 == 101
        })
        .await
    );
    s.stop().await;
}
