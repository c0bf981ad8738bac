//! Shared helpers for the black-box tests: a real server on 127.0.0.1:0, a tiny raw HTTP
//! client, and a WebSocket client that reads JSON frames. `process` runs the built binary on
//! a data directory; `journal` reads and damages its journal files.
#![allow(dead_code)]

pub mod journal;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use parley::chat::Core;
use parley::config::{parse_args, Parsed};

/// A password that passes the tests' `--min-password-length 8`.
pub const PASSWORD: &str = "correct horse battery";

/// Patience for anything the server should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts an in-process server on 127.0.0.1:0 with fast hashing, no disk and no REST rate
/// limit (tests create rooms quickly), plus `extra` flags, which win.
pub async fn start(extra: &[&str]) -> Server {
    let mut args: Vec<String> = [
        "--ephemeral",
        "--pbkdf2-iterations",
        "1000",
        "--min-password-length",
        "8",
        "--rest-rate-limit",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let cfg = match parse_args(args) {
        Ok(Parsed::Run(cfg)) => *cfg,
        other => panic!("bad test flags: {other:?}"),
    };
    start_config(cfg).await
}

impl Server {
    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `retry_after_ms` of an error, checked against its `Retry-After` header: a positive
    /// wait, and the header is it rounded up to whole seconds.
    pub fn retry_after_ms(&self) -> u64 {
        let ms = self.json()["error"]["retry_after_ms"]
            .as_u64()
            .expect("retry_after_ms");
        let secs: u64 = self
            .header("retry-after")
            .expect("Retry-After header")
            .parse()
            .expect("Retry-After in whole seconds");
        assert!(
            ms > 0 && secs * 1000 >= ms && secs * 1000 < ms + 1000,
            "{secs} s vs {ms} ms"
        );
        ms
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The contract's `error.code`.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Reads one response from `stream`; `buf` carries bytes past it for pipelining.
pub async fn read_reply<R>(stream: &mut R, buf: &mut Vec<u8>) -> Option<Reply>
where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        if let Some(reply) = parse_reply(buf) {
            return Some(reply);
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on its own connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    request_on(stream, method, path, token, body).await
}

/// One request on its own connection from the loopback address `from`, so that per-address
/// limits (registrations per IP, connections per IP) do not get in a test's way.
pub async fn request_from(
    addr: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let stream = connect_from(addr, from).await;
    request_on(stream, method, path, token, body).await
}

/// One request on `stream`, which then closes.
pub async fn request_on(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_reply(&mut stream, &mut Vec::new())
        .await
        .expect("a response")
}

pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    request(addr, "GET", path, token, None).await
}

pub async fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: Value) -> Reply {
    request(addr, "POST", path, token, Some(&body)).await
}

/// The wall clock in ms since the epoch, as the server stamps `ts` and `last_seen`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Logs in, which must work; returns the token.
pub async fn login_token(addr: SocketAddr, name: &str, password: &str) -> String {
    let r = login(addr, name, password).await;
    assert_eq!(r.status, 200, "login {name}: {:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

/// Registers `name` and logs in; returns the token.
pub async fn user(addr: SocketAddr, name: &str) -> String {
    let creds = json!({ "username": name, "password": PASSWORD });
    let r = post(addr, "/api/v1/register", None, creds.clone()).await;
    assert_eq!(r.status, 201, "register {name}: {:?}", r.json());
    let r = post(addr, "/api/v1/login", None, creds).await;
    assert_eq!(r.status, 200, "login {name}: {:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

/// Registers `name`, a name given to `--admin` that has no account yet, with the server's
/// admin setup code, and logs in; returns the token.
pub async fn register_admin(addr: SocketAddr, core: &Core, name: &str) -> String {
    let code = core
        .admin_setup_code()
        .expect("an --admin name awaits its account");
    register_with_code(addr, name, &code).await
}

/// Registers `name` with `invite_code` `code`, which must work, and logs in; returns the token.
pub async fn register_with_code(addr: SocketAddr, name: &str, code: &str) -> String {
    let body = json!({ "username": name, "password": PASSWORD, "invite_code": code });
    let r = post(addr, "/api/v1/register", None, body).await;
    assert_eq!(r.status, 201, "register {name}: {:?}", r.json());
    let r = login(addr, name, PASSWORD).await;
    assert_eq!(r.status, 200, "login {name}: {:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

/// What the server's log says before the admin setup code, which follows it.
pub const SETUP_CODE_SAYS: &str = "with the invite code ";

/// The admin setup code in a server's log (the last one, if it started several times).
pub fn setup_code_in(log: &str) -> Option<String> {
    let (_, after) = log.rsplit_once(SETUP_CODE_SAYS)?;
    after.split_whitespace().next().map(str::to_string)
}

/// Creates a room; returns its id.
pub async fn room(addr: SocketAddr, token: &str, name: &str) -> String {
    let r = post(addr, "/api/v1/rooms", Some(token), json!({ "name": name })).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    r.json()["id"].as_str().unwrap().to_string()
}

pub async fn join(addr: SocketAddr, token: &str, room: &str) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{room}/join"),
        Some(token),
        json!({}),
    )
    .await
}

/// `POST /api/v1/rooms/{id}/leave`.
pub async fn leave(addr: SocketAddr, token: &str, id: &str) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{id}/leave"),
        Some(token),
        json!({}),
    )
    .await
}

pub async fn login(addr: SocketAddr, name: &str, password: &str) -> Reply {
    post(
        addr,
        "/api/v1/login",
        None,
        json!({ "username": name, "password": password }),
    )
    .await
}

/// Every kept entry of a room through the REST history call, paging back with `before`, oldest
/// first; and `first_seq`.
pub async fn history(addr: SocketAddr, token: &str, room: &str) -> (Vec<Value>, u64) {
    let mut all: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            None => format!("/api/v1/rooms/{room}/messages?limit=500"),
            Some(b) => format!("/api/v1/rooms/{room}/messages?limit=500&before={b}"),
        };
        let r = get(addr, &path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.json());
        let body = r.json();
        let first_seq = body["first_seq"].as_u64().expect("first_seq");
        let page = body["entries"].as_array().expect("entries").clone();
        let Some(oldest) = page.first().map(seq) else {
            return (all, first_seq);
        };
        if let Some(b) = before {
            assert!(oldest < b, "paging back from {b} gave seq {oldest}");
        }
        all.splice(0..0, page);
        if oldest <= first_seq {
            return (all, first_seq);
        }
        before = Some(oldest);
    }
}

pub fn seq(entry: &Value) -> u64 {
    entry["seq"].as_u64().expect("entry seq")
}

/// An entry as history shows it: an `entry` frame without its `type` and `nonce`.
pub fn as_entry(frame: &Value) -> Value {
    let mut e = frame.clone();
    if let Some(obj) = e.as_object_mut() {
        obj.remove("type");
        obj.remove("nonce");
    }
    e
}

/// Posts `text` over `ws` and returns the acknowledging copy (the one with our nonce).
pub async fn say_acked(ws: &mut Ws, room: &str, text: &str) -> Value {
    static NONCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nonce = format!("n{n}");
    ws.say(room, text, &nonce).await;
    let ack = ws
        .next_where("entry", |f| f["nonce"] == nonce.as_str())
        .await;
    assert_eq!(ack["text"], text, "{ack}");
    ack
}

/// A WebSocket client that reads JSON frames.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Why a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(u16),
    /// The stream ended without a close frame.
    Eof,
}

pub async fn ws(addr: SocketAddr, token: &str) -> Ws {
    let url = format!("ws://{addr}/api/v1/ws?token={token}");
    let (inner, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    Ws { inner }
}

/// Upgrades a connection the caller opened (with its own socket options, say).
pub async fn ws_on(stream: TcpStream, addr: SocketAddr, token: &str) -> Ws {
    let url = format!("ws://{addr}/api/v1/ws?token={token}");
    let (inner, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    Ws { inner }
}

/// Connects and returns the client with its `hello` frame.
pub async fn ws_hello(addr: SocketAddr, token: &str) -> (Ws, Value) {
    let mut c = ws(addr, token).await;
    let hello = c.next().await.expect("hello");
    assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
    (c, hello)
}

impl Ws {
    /// The next JSON frame, or `None` if the connection ended or nothing came in time.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT).await
    }

    /// The next JSON frame within `wait` in all: pings and pongs do not restart the clock.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Skips frames until one of type `kind` (and matching `pred`) arrives.
    pub async fn next_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let f = self
                .next()
                .await
                .unwrap_or_else(|| panic!("no {kind} frame arrived"));
            if f["type"] == kind && pred(&f) {
                return f;
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Posts `text` to `room` with a nonce.
    pub async fn say(&mut self, room: &str, text: &str, nonce: &str) {
        self.send(json!({ "type": "send", "room": room, "text": text, "nonce": nonce }))
            .await;
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.inner.next()).await {
                Err(_) => panic!("connection still open"),
                Ok(None) | Ok(Some(Err(_))) => return Ended::Eof,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Close(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

pub fn close_code(c: u16) -> CloseCode {
    CloseCode::from(c)
}

// ----- raw HTTP helpers for the limit and keep-alive tests -----

/// Starts an in-process server with exactly `cfg`, none of the test defaults.
pub async fn start_config(cfg: parley::Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let core = parley::start(cfg).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(parley::run(listener, core.clone(), async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        core,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Connects to `addr` from the loopback address `from` (any 127.x.y.z works on Linux), so a
/// test can look like several client IPs.
pub async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// The bytes of one HTTP/1.1 request that keeps the connection open.
pub fn request_bytes(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> String {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A keep-alive connection that sends requests one after another.
pub struct KeepAlive {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl KeepAlive {
    pub async fn open(addr: SocketAddr) -> KeepAlive {
        KeepAlive::over(TcpStream::connect(addr).await.unwrap())
    }

    pub fn over(stream: TcpStream) -> KeepAlive {
        KeepAlive {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request and reads its response; `None` if the connection ended instead.
    pub async fn ask(&mut self, method: &str, path: &str, token: Option<&str>) -> Option<Reply> {
        let req = request_bytes(method, path, token, None);
        self.stream.write_all(req.as_bytes()).await.ok()?;
        read_reply(&mut self.stream, &mut self.buf).await
    }
}

/// Writes `bytes` on a fresh connection and reads one response. The write runs beside the
/// read and its errors are ignored, as a server may answer and close before reading it all.
pub async fn raw(addr: SocketAddr, bytes: Vec<u8>) -> (Option<Reply>, TcpStream) {
    let stream = TcpStream::connect(addr).await.unwrap();
    raw_on(stream, bytes).await
}

/// Like [`raw`], on a connection the caller opened.
pub async fn raw_on(stream: TcpStream, bytes: Vec<u8>) -> (Option<Reply>, TcpStream) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut buf = Vec::new();
    let reply = read_reply(&mut rd, &mut buf).await;
    let wr = writer.await.unwrap();
    (reply, rd.reunite(wr).unwrap())
}

/// One complete response at the start of `buf`, removed from it.
pub fn parse_reply(buf: &mut Vec<u8>) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    Some(Reply {
        status,
        headers,
        body,
    })
}

/// Reads until the server closes `stream` or `wait` passes. Returns the bytes that arrived
/// before the close, or `None` if it stayed open.
pub async fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Polls `check` every 50 ms until it holds; false if it still does not after [`WAIT`].
pub async fn eventually<F, Fut>(check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(WAIT, check).await
}

/// Polls `check` every 50 ms until it holds; false if it still does not after `wait`.
pub async fn within<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a reply's status and error code.
#[track_caller]
pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Asserts a `204 No Content`.
#[track_caller]
pub fn assert_204(r: &Reply) {
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// A room's `last_seq` as `hello` reports it.
pub fn hello_last_seq(hello: &serde_json::Value, room: &str) -> u64 {
    hello["rooms"]
        .as_array()
        .expect("hello rooms")
        .iter()
        .find(|r| r["id"] == room)
        .unwrap_or_else(|| panic!("room {room} is not in hello: {hello}"))["last_seq"]
        .as_u64()
        .expect("last_seq")
}

// ----- the built binary -----

/// A `parley-server` child process, killed when dropped.
pub struct Child {
    pub process: std::process::Child,
    pub addr: SocketAddr,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs `command` (the built server, possibly wrapped) with stdout piped and waits for its
/// first line, `parley listening on HOST:PORT`.
pub fn spawn_server(mut command: std::process::Command) -> Child {
    use std::io::{BufRead, BufReader};
    let mut process = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start parley-server");
    let mut line = String::new();
    BufReader::new(process.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("parley listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .expect("an address");
    Child { process, addr }
}

/// Posts a marker message to `room` and returns every frame that arrived before its own
/// acknowledgement. The server queues each connection's frames in order, so anything that
/// was going to reach this connection before the marker is in the returned list: it shows
/// what a connection did *not* receive without waiting on a clock.
pub async fn frames_until_own(w: &mut Ws, room: &str, marker: &str) -> Vec<Value> {
    w.say(room, marker, marker).await;
    let mut before = Vec::new();
    loop {
        let f = w
            .next()
            .await
            .unwrap_or_else(|| panic!("marker {marker} never came back"));
        if f["type"] == "entry" && f["nonce"] == marker {
            return before;
        }
        before.push(f);
    }
}
