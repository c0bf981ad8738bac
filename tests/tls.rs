//! `--tls-cert` and `--tls-key`: HTTPS and WSS on the real binary with certificates the test
//! makes with rcgen, reloading on SIGHUP, a bad pair kept out, and the handshake's timeout.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{self, Proc, TempDir};
use common::{parse_reply, read_reply, Reply, PASSWORD, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A self-signed certificate for `localhost`, written as `NAME.crt` and `NAME.key` in `dir`.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn make_pair(dir: &Path, name: &str) -> Pair {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pair = Pair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        der: made.cert.der().clone(),
    };
    std::fs::write(&pair.cert, made.cert.pem()).unwrap();
    std::fs::write(&pair.key, made.signing_key.serialize_pem()).unwrap();
    pair
}

/// Replaces the files the server was started with by `src`'s, atomically each.
fn install(src: &Pair, cert: &Path, key: &Path) {
    for (from, to) in [(&src.cert, cert), (&src.key, key)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

/// A client that trusts `roots`.
fn client(roots: &[&CertificateDer<'static>]) -> TlsConnector {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    // A resumed session reports the certificate of the session it resumes; every handshake
    // here is a full one, so it shows the certificate the server holds now.
    cfg.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> TlsStream<TcpStream> {
    connect_on(TcpStream::connect(addr).await.unwrap(), tls).await
}

async fn connect_on(tcp: TcpStream, tls: &TlsConnector) -> TlsStream<TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, tls.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

/// The certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn https(
    addr: SocketAddr,
    tls: &TlsConnector,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut stream = connect(addr, tls).await;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_reply(&mut stream, &mut Vec::new())
        .await
        .expect("a response")
}

/// Registers `name` over HTTPS and logs in; returns the token.
async fn user(addr: SocketAddr, tls: &TlsConnector, name: &str) -> String {
    let creds = json!({ "username": name, "password": PASSWORD });
    let r = https(addr, tls, "POST", "/api/v1/register", Some(&creds)).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = https(addr, tls, "POST", "/api/v1/login", Some(&creds)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss(addr: SocketAddr, tls: &TlsConnector, token: &str) -> (Wss, CertificateDer<'static>) {
    let stream = connect(addr, tls).await;
    let cert = presented(&stream);
    let url = format!("ws://localhost/api/v1/ws?token={token}");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade");
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (ws, cert)
}

async fn next(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Creates a room over HTTPS, posts `text` to it over `ws` and waits for the entry; returns
/// the room's id.
async fn round_trip(
    addr: SocketAddr,
    tls: &TlsConnector,
    token: &str,
    ws: &mut Wss,
    text: &str,
) -> String {
    let mut stream = connect(addr, tls).await;
    let body = json!({ "name": format!("room-{}", text.len()) }).to_string();
    let req = format!(
        "POST /api/v1/rooms HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let r = read_reply(&mut stream, &mut Vec::new()).await.unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());
    let room = r.json()["id"].as_str().unwrap().to_string();
    let send = json!({ "type": "send", "room": room, "text": text, "nonce": text });
    ws.send(Message::text(send.to_string())).await.unwrap();
    loop {
        let f = next(ws).await;
        if f["type"] == "entry" && f["text"] == text {
            return room;
        }
    }
}

fn start(dir: &TempDir, pair: &Pair, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--tls-cert",
        pair.cert.to_str().unwrap(),
        "--tls-key",
        pair.key.to_str().unwrap(),
    ];
    args.extend(extra);
    process::start(&dir.data(), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_serve_the_whole_api() {
    let dir = TempDir::new("tls-serve");
    let pair = make_pair(&dir.0, "server");
    let server = start(&dir, &pair, &[]);
    let tls = client(&[&pair.der]);
    let r = https(server.addr, &tls, "GET", "/healthz", None).await;
    assert_eq!(r.status, 200);
    // Keep-alive over TLS: two requests on one connection.
    let mut stream = connect(server.addr, &tls).await;
    let mut buf = Vec::new();
    for _ in 0..2 {
        let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
        stream.write_all(req.as_bytes()).await.unwrap();
        let r = read_reply(&mut stream, &mut buf).await.expect("a response");
        assert_eq!(r.status, 200);
    }
    let token = user(server.addr, &tls, "alice").await;
    let (mut ws, cert) = wss(server.addr, &tls, &token).await;
    assert_eq!(cert, pair.der);
    round_trip(server.addr, &tls, &token, &mut ws, "over-wss").await;
    // A large message crosses several TLS records both ways.
    round_trip(server.addr, &tls, &token, &mut ws, &"x".repeat(4000)).await;
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut got)).await;
    assert!(
        parse_reply(&mut got).is_none(),
        "a plain answer on the TLS port"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_and_open_connections_carry_on() {
    let dir = TempDir::new("tls-reload");
    let (old, new) = (make_pair(&dir.0, "old"), make_pair(&dir.0, "new"));
    let live = make_pair(&dir.0, "live");
    install(&old, &live.cert, &live.key);
    let server = start(&dir, &live, &[]);
    let tls = client(&[&old.der, &new.der]);
    let token = user(server.addr, &tls, "alice").await;
    let (mut ws, cert) = wss(server.addr, &tls, &token).await;
    assert_eq!(cert, old.der);

    install(&new, &live.cert, &live.key);
    server.sighup();
    server
        .stderr_eventually_contains("reloaded the TLS certificate")
        .await;
    assert_eq!(presented(&connect(server.addr, &tls).await), new.der);
    let (_, cert) = wss(server.addr, &tls, &token).await;
    assert_eq!(cert, new.der, "new handshakes get the new certificate");
    // The connection from before the reload still works both ways.
    round_trip(server.addr, &tls, &token, &mut ws, "after-reload").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pair_on_sighup_is_logged_and_the_old_one_kept() {
    let dir = TempDir::new("tls-bad-reload");
    let (old, other) = (make_pair(&dir.0, "old"), make_pair(&dir.0, "other"));
    let live = make_pair(&dir.0, "live");
    install(&old, &live.cert, &live.key);
    let server = start(&dir, &live, &[]);
    let tls = client(&[&old.der, &other.der]);
    let token = user(server.addr, &tls, "alice").await;
    let (mut ws, _) = wss(server.addr, &tls, &token).await;

    // A certificate with a key that is not its own.
    std::fs::copy(&other.cert, &live.cert).unwrap();
    server.sighup();
    let log = server
        .stderr_eventually_contains("keeping the current certificate")
        .await;
    assert!(log.contains("does not belong"), "{log}");
    assert_eq!(presented(&connect(server.addr, &tls).await), old.der);
    // Then a file that is not PEM at all.
    std::fs::write(&live.cert, "garbage\n").unwrap();
    server.sighup();
    server
        .stderr_eventually_contains("no PEM certificate")
        .await;
    assert_eq!(presented(&connect(server.addr, &tls).await), old.der);
    round_trip(server.addr, &tls, &token, &mut ws, "still-here").await;
    // A good pair after bad ones is taken.
    install(&other, &live.cert, &live.key);
    server.sighup();
    server
        .stderr_eventually_contains("reloaded the TLS certificate")
        .await;
    assert_eq!(presented(&connect(server.addr, &tls).await), other.der);
    server.stop().await;
}

/// Waits for the server to close `stream`; returns how long that took.
async fn closed_within(mut stream: TcpStream, wait: Duration) -> Duration {
    let began = Instant::now();
    let mut scratch = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut scratch)).await {
            Err(_) => panic!("still open after {wait:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return began.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_stalled_tls_client_is_closed_after_the_header_timeout() {
    let dir = TempDir::new("tls-timeout");
    let pair = make_pair(&dir.0, "server");
    let server = start(&dir, &pair, &["--header-timeout", "1"]);
    let silent = TcpStream::connect(server.addr).await.unwrap();
    // A TLS record header announcing a 512-byte ClientHello, and only part of it.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        closed_within(silent, Duration::from_secs(5)),
        closed_within(partial, Duration::from_secs(5))
    );
    for took in [a, b] {
        assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
    }
    // Others are served meanwhile and afterwards.
    let tls = client(&[&pair.der]);
    let r = https(server.addr, &tls, "GET", "/healthz", None).await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_at_start_up_exits_2_naming_the_files() {
    let dir = TempDir::new("tls-mismatch");
    let (a, b) = (make_pair(&dir.0, "a"), make_pair(&dir.0, "b"));
    let (status, stderr) = process::refused(
        &dir.data(),
        &[
            "--tls-cert",
            a.cert.to_str().unwrap(),
            "--tls-key",
            b.key.to_str().unwrap(),
        ],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(a.cert.to_str().unwrap()) && stderr.contains(b.key.to_str().unwrap()),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_reader_that_falls_behind_gets_every_entry_once_it_reads() {
    let dir = TempDir::new("tls-backlog");
    let pair = make_pair(&dir.0, "server");
    let server = start(&dir, &pair, &["--max-outbound-bytes", "16777216"]);
    let tls = client(&[&pair.der]);
    let token = user(server.addr, &tls, "alice").await;
    let (mut ws, _) = wss(server.addr, &tls, &token).await;
    let room = round_trip(server.addr, &tls, &token, &mut ws, "warm-up").await;
    // A second connection with a small receive buffer that does not read for a while: the
    // server's socket fills, and encrypted records wait on the server's side.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let stream = connect_on(tcp, &tls).await;
    let url = format!("ws://localhost/api/v1/ws?token={token}");
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(next(&mut slow).await["type"], "hello");
    const N: usize = 300;
    let text = |i: usize| format!("{i:04}{}", "y".repeat(3000));
    for i in 0..N {
        let send = json!({ "type": "send", "room": room, "text": text(i) });
        ws.send(Message::text(send.to_string())).await.unwrap();
    }
    // Time for the backlog to build up; the check below holds however long this is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = 0;
    while seen < N {
        let f = next(&mut slow).await;
        if f["type"] == "entry" && f["text"].as_str().is_some_and(|t| t.len() > 3000) {
            assert_eq!(f["text"], text(seen), "entries arrive once, in order");
            seen += 1;
        }
    }
    server.stop().await;
}
