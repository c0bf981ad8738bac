//! The WebSocket connection thread: connect, read the `hello`, pump frames both ways,
//! and when the connection drops, reconnect with growing back-off.
//!
//! It knows nothing of rooms or messages. It reports what happens as [`NetEvent`]s on a
//! channel and writes whatever JSON text it is handed; what to `sync` and what to send
//! again after a reconnect is decided by the app, which sees the same events in order.
//!
//! tungstenite is used in blocking mode on a std `TcpStream`, or on rustls over one for
//! `wss://` ([`crate::tls::Stream`]). The socket gets a short read timeout so that one
//! thread can both wait for frames and pick up outgoing ones; partial frames survive a
//! timeout inside tungstenite's buffer (and partial TLS records inside rustls's).

use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::http::Endpoint;
use crate::protocol::{Room, ServerFrame};
use crate::render::human_ms;
use crate::tls::Stream;

/// How long one read blocks before outgoing frames are looked at. Default is 20 ms: the
/// most a typed message waits before it is written.
pub const POLL: Duration = Duration::from_millis(20);

/// How long the handshake and the `hello` may take. Default is 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First reconnect delay. Default is 250 ms: a blip heals before anyone notices.
pub const BACKOFF_START: Duration = Duration::from_millis(250);

/// Longest reconnect delay. Default is 10 s: a restarted server is found within 10 s of
/// coming back, and a dead one costs one attempt every 10 s.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A connection that lived this long resets the back-off. Default is 10 s.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Largest frame accepted. Default is 8 MiB: a full `history` answer (500 entries of
/// 4 KiB, JSON-escaped) fits with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Heartbeat assumed when the `hello` does not say. Default is 20 s, the server's default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(20);

/// The `hello` frame, the first of every connection.
#[derive(Debug, Clone)]
pub struct Hello {
    pub username: String,
    /// Compared for equality only: a new value means the server lost its timelines.
    pub epoch: String,
    pub heartbeat: Duration,
    pub rooms: Vec<Room>,
}

/// What the connection thread reports, in order.
#[derive(Debug)]
pub enum NetEvent {
    /// Connected and greeted (the first time and after every reconnect).
    Connected(Hello),
    /// A frame after the `hello`.
    Frame(ServerFrame),
    /// A text frame that is not valid JSON of a known shape.
    Garbled(String),
    /// The connection dropped; a reconnect follows after `retry_in`.
    Lost { reason: String, retry_in: Duration },
    /// A reconnect attempt failed; the next follows after `retry_in`.
    RetryFailed {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The session is over (logged out elsewhere, expired, refused); no reconnect.
    Ended { reason: String },
}

enum Cmd {
    Text(String),
    Shutdown,
}

/// Handle to the connection thread. Dropping it without [`Connection::shutdown`] also
/// stops the thread, at its next poll.
pub struct Connection {
    cmds: Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

impl Connection {
    /// Start connecting in the background. Events go to `events`, tagged with `tag` so
    /// that the receiver can tell this connection's events from an earlier one's.
    pub fn start(ep: Endpoint, token: String, tag: u64, events: Sender<(u64, NetEvent)>) -> Self {
        // Unbounded is safe here: only the app feeds it, one frame per line the user typed
        // or per room to sync, and the outbox above it is bounded.
        let (cmds, rx) = crossbeam_channel::unbounded();
        let thread = thread::Builder::new()
            .name("parley-ws".into())
            .spawn(move || run(ep, token, tag, rx, events))
            .ok();
        Connection { cmds, thread }
    }

    /// Write one text frame if connected; dropped if not (the app re-sends what matters
    /// after the next `Connected`).
    pub fn send(&self, json: String) {
        let _ = self.cmds.send(Cmd::Text(json));
    }

    /// Close with 1000 and wait (briefly) for the thread to finish.
    pub fn shutdown(mut self) {
        let _ = self.cmds.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Shutdown);
    }
}

/// Delay before reconnect attempt `attempt` (1-based): doubling from
/// [`BACKOFF_START`] up to [`BACKOFF_MAX`], with ±20 % jitter so that many clients of a
/// restarted server do not come back in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_START.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let base = base.min(BACKOFF_MAX);
    let jitter = rand::random_range(0.8..1.2);
    base.mul_f64(jitter).min(BACKOFF_MAX)
}

enum Exit {
    Shutdown,
    Lost(String),
    Ended(String),
}

enum ConnectError {
    /// Worth retrying.
    Retry(String),
    /// The server refused the session.
    Fatal(String),
}

fn run(
    ep: Endpoint,
    token: String,
    tag: u64,
    cmds: Receiver<Cmd>,
    events: Sender<(u64, NetEvent)>,
) {
    let emit = |ev: NetEvent| events.send((tag, ev)).is_ok();
    // Failed attempts since the last good connection, and connections in a row that
    // died young: both push the back-off up, so a server that is down, or that accepts
    // and drops at once, is not hammered.
    let mut failures: u32 = 0;
    let mut young_drops: u32 = 0;
    loop {
        match connect(&ep, &token) {
            Ok((ws, hello)) => {
                failures = 0;
                let heartbeat = hello.heartbeat;
                if !emit(NetEvent::Connected(hello)) {
                    return;
                }
                let since = Instant::now();
                match pump(ws, heartbeat, &cmds, &emit) {
                    Exit::Shutdown => return,
                    Exit::Ended(reason) => {
                        emit(NetEvent::Ended { reason });
                        return;
                    }
                    Exit::Lost(reason) => {
                        young_drops = if since.elapsed() > STABLE_AFTER {
                            0
                        } else {
                            young_drops.saturating_add(1)
                        };
                        let retry_in = backoff(1 + young_drops);
                        if !emit(NetEvent::Lost { reason, retry_in }) || wait(&cmds, retry_in) {
                            return;
                        }
                    }
                }
            }
            Err(ConnectError::Fatal(reason)) => {
                emit(NetEvent::Ended { reason });
                return;
            }
            Err(ConnectError::Retry(reason)) => {
                failures = failures.saturating_add(1);
                let retry_in = backoff(1 + failures + young_drops);
                let ev = NetEvent::RetryFailed {
                    reason,
                    attempt: failures,
                    retry_in,
                };
                if !emit(ev) || wait(&cmds, retry_in) {
                    return;
                }
            }
        }
    }
}

/// Sleep for `d` unless told to shut down (returns true then). Frames handed over while
/// offline are dropped: the app keeps its own queue and re-sends after reconnecting.
fn wait(cmds: &Receiver<Cmd>, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cmds.recv_timeout(left) {
            Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => return true,
            Ok(Cmd::Text(_)) => continue,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

type Ws = WebSocket<Stream>;

fn connect(ep: &Endpoint, token: &str) -> Result<(Ws, Hello), ConnectError> {
    let retry = |what: &str, e: &dyn std::fmt::Display| ConnectError::Retry(format!("{what}: {e}"));
    let stream = ep
        .connect()
        .map_err(|e| ConnectError::Retry(crate::http::describe_io(&e)))?;
    stream
        .tcp()
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|_| stream.tcp().set_write_timeout(Some(HANDSHAKE_TIMEOUT)))
        .map_err(|e| retry("socket", &e))?;

    let mut req = ep
        .ws_url("/api/v1/ws")
        .into_client_request()
        .map_err(|e| ConnectError::Fatal(format!("bad server address: {e}")))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ConnectError::Fatal("token is not a valid header value".into()))?;
    req.headers_mut().insert("Authorization", auth);

    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES));
    let (mut ws, _resp) = match tungstenite::client::client_with_config(req, stream, Some(config)) {
        Ok(ok) => ok,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            return Err(match status {
                401 => ConnectError::Fatal("the server no longer accepts this session".into()),
                403 => {
                    ConnectError::Fatal(format!("the server refused the connection (403) {body}"))
                }
                _ => ConnectError::Retry(format!("upgrade refused with {status}")),
            });
        }
        Err(e) => return Err(retry("handshake failed", &e)),
    };

    // The first frame must be `hello`.
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let hello = loop {
        if Instant::now() > deadline {
            return Err(ConnectError::Retry("no hello from the server".into()));
        }
        match ws.read() {
            Ok(Message::Text(t)) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                Ok(ServerFrame::Hello {
                    username,
                    epoch,
                    heartbeat_ms,
                    rooms,
                }) => {
                    let heartbeat = if heartbeat_ms == 0 {
                        DEFAULT_HEARTBEAT
                    } else {
                        Duration::from_millis(heartbeat_ms)
                    };
                    break Hello {
                        username,
                        epoch,
                        heartbeat,
                        rooms,
                    };
                }
                _ => {
                    return Err(ConnectError::Retry(format!(
                        "expected hello, got {}",
                        truncate(t.as_str(), 80)
                    )))
                }
            },
            Ok(Message::Close(frame)) => {
                let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                return Err(if code == 4001 {
                    ConnectError::Fatal("session ended".into())
                } else {
                    ConnectError::Retry(format!("closed before hello ({code})"))
                });
            }
            Ok(_) => continue,
            Err(e) => return Err(retry("no hello", &e)),
        }
    };
    ws.get_mut()
        .tcp()
        .set_read_timeout(Some(POLL))
        .map_err(|e| retry("socket", &e))?;
    Ok((ws, hello))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn pump(
    mut ws: Ws,
    heartbeat: Duration,
    cmds: &Receiver<Cmd>,
    emit: &dyn Fn(NetEvent) -> bool,
) -> Exit {
    // The server pings every heartbeat; three silent intervals (plus slack) mean the
    // connection is dead even if TCP has not noticed.
    let silence_limit = heartbeat.saturating_mul(3) + Duration::from_secs(2);
    let mut last_heard = Instant::now();
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Text(t)) => {
                    trace("->", &t);
                    if let Err(e) = ws.send(Message::text(t)) {
                        return Exit::Lost(format!("write failed: {e}"));
                    }
                }
                Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => {
                    close(&mut ws);
                    return Exit::Shutdown;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        match ws.read() {
            Ok(msg) => {
                last_heard = Instant::now();
                match msg {
                    Message::Text(t) => {
                        trace("<-", t.as_str());
                        let ev = match serde_json::from_str::<ServerFrame>(t.as_str()) {
                            Ok(f) => NetEvent::Frame(f),
                            Err(_) => NetEvent::Garbled(truncate(t.as_str(), 200)),
                        };
                        if !emit(ev) {
                            close(&mut ws);
                            return Exit::Shutdown;
                        }
                    }
                    Message::Close(frame) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        return closed(code, &reason);
                    }
                    // Pings are answered by tungstenite on the next read or write.
                    _ => {}
                }
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if last_heard.elapsed() > silence_limit {
                    return Exit::Lost(format!(
                        "no word from the server for {}",
                        human_ms(silence_limit.as_millis() as u64)
                    ));
                }
            }
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return Exit::Lost("connection closed".into());
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return Exit::Lost("the server went away without closing".into()),
            Err(e) => return Exit::Lost(e.to_string()),
        }
    }
}

/// What a close code from the server means for us.
fn closed(code: u16, reason: &str) -> Exit {
    if code == 4001 {
        return Exit::Ended(if reason.is_empty() {
            "session ended by the server".to_owned()
        } else {
            format!("session ended by the server ({reason})")
        });
    }
    if code == 1001 {
        return Exit::Lost("the server is shutting down".to_owned());
    }
    if !reason.is_empty() {
        return Exit::Lost(format!("server closed the connection ({code}: {reason})"));
    }
    Exit::Lost(match code {
        4002 => "server dropped us for reading too slowly".to_owned(),
        1008 => "server closed the connection for a policy violation".to_owned(),
        1009 => "server closed the connection: frame too big".to_owned(),
        c => format!("server closed the connection ({c})"),
    })
}

fn close(ws: &mut Ws) {
    let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }));
    // Give the server a moment to answer the close so it sees a clean 1000.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    ws.get_mut().close();
}

/// With `PARLEY_TRACE` set, every frame goes to stderr: for debugging a server.
fn trace(dir: &str, text: &str) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("PARLEY_TRACE").is_some()) {
        eprintln!("{} {dir} {text}", crate::render::now_ms());
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut last_max = Duration::ZERO;
        for attempt in 1..=12 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_MAX, "{attempt}: {d:?}");
            let nominal = BACKOFF_START
                .saturating_mul(1 << (attempt - 1))
                .min(BACKOFF_MAX);
            assert!(
                d >= nominal.mul_f64(0.79).min(BACKOFF_MAX),
                "{attempt}: {d:?}"
            );
            last_max = last_max.max(d);
        }
        assert!(last_max >= BACKOFF_MAX.mul_f64(0.79));
        assert!(backoff(1) < Duration::from_millis(400));
    }

    #[test]
    fn close_codes() {
        assert!(matches!(closed(4001, ""), Exit::Ended(_)));
        for c in [1000, 1001, 1008, 1009, 4002, 1011] {
            assert!(matches!(closed(c, ""), Exit::Lost(_)), "{c}");
        }
    }
}
