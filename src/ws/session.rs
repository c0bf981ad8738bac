//! One WebSocket connection, driven by a single task.
//!
//! The task waits on three things: the socket becoming readable, its outbound queue getting
//! frames, and (while output is pending) the socket becoming writable. Whatever is queued is
//! taken at once and written with as few syscalls as the socket allows, so a busy room costs
//! one write per connection per wake-up, not one per message.
//!
//! An idle connection holds no read or write buffer: both are allocated while bytes are in
//! flight and dropped when they drain. Heartbeat pings come from one server-wide timer
//! (`Core::heartbeat`), not from a timer per connection.

use std::io::{self, ErrorKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::frame::{self, close, FrameError, InFrame};
use crate::chat::outbound::Close;
use crate::chat::{commands, now_ms, Auth, Caller, ChatError, Command, Conn, Core, Posted};
use crate::config::MAX_WS_MESSAGE;
use crate::http::Stream;
use crate::metrics::Metrics;
use crate::protocol::{ClientFrame, ServerFrame};

/// How long a closing connection may take to drain its last bytes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering after a close.
const LINGER_BYTES: usize = 64 * 1024;
/// Most bytes read in one wake-up, so one busy client cannot monopolize the task.
const READ_BUDGET: usize = 64 * 1024;

pub async fn run(
    core: Arc<Core>,
    mut stream: Stream,
    leftover: Vec<u8>,
    auth: Auth,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.tcp().set_nodelay(true);
    let conn = core.open_conn(&auth);
    // Closes the connection in the core however this task ends, a panic included, so a
    // user is never left online by a connection that is gone.
    let guard = Registered {
        core: &core,
        conn: &conn,
    };
    let mut s = Session {
        core: &core,
        conn: &conn,
        stream: &mut stream,
        rbuf: leftover,
        message: None,
    };
    let ended = s.drive(shutdown).await;
    drop(guard);
    if ended.is_ok() {
        linger(stream).await;
    }
}

/// Unregisters a connection from the core when dropped.
struct Registered<'a> {
    core: &'a Core,
    conn: &'a Arc<Conn>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.core.close_conn(self.conn);
    }
}

/// After our close frame went out: half-close, then read and discard what the client still
/// sends until it closes too, for a moment. Closing a socket with unread bytes makes the
/// kernel answer with a reset, which can destroy the close frame before the client reads it.
///
/// The whole of it is bounded by `CLOSE_GRACE`: under TLS the half-close first writes out
/// what rustls still holds, which a client that stopped reading would never take.
async fn linger(mut stream: Stream) {
    let drain = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

/// The close frame that answers a client's close payload (RFC 6455 §5.5.1, §7.4): an empty
/// payload gets 1000; a code a peer may send is echoed; a 1-byte payload or a code a peer may
/// not send gets 1002; a reason that is not UTF-8 gets 1007.
fn close_answer(payload: &[u8]) -> Close {
    let (code, reason) = match payload {
        [] => {
            return Close {
                code: close::NORMAL,
                reason: "",
            }
        }
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
        [_] => {
            return Close {
                code: close::PROTOCOL,
                reason: "close payload of one byte",
            }
        }
    };
    if !may_be_sent(code) {
        return Close {
            code: close::PROTOCOL,
            reason: "close code a peer may not send",
        };
    }
    if std::str::from_utf8(reason).is_err() {
        return Close {
            code: close::INVALID_DATA,
            reason: "close reason is not UTF-8",
        };
    }
    Close { code, reason: "" }
}

/// Whether a peer may put `code` in a close frame: the codes RFC 6455 and the IANA registry
/// define for use on the wire (1000-1003, 1007-1014), and the ranges for libraries and
/// applications (3000-4999). 1004 is reserved; 1005, 1006 and 1015 only report what happened
/// locally; 1016-2999 are unassigned or reserved for future protocol use.
fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

struct Session<'a> {
    core: &'a Core,
    conn: &'a Arc<Conn>,
    stream: &'a mut Stream,
    rbuf: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and payload so far.
    message: Option<(OpCode, Vec<u8>)>,
}

impl Session<'_> {
    async fn drive(&mut self, mut shutdown: watch::Receiver<bool>) -> io::Result<()> {
        let mut wbuf: Vec<u8> = Vec::new();
        let mut wpos = 0;
        let mut closing: Option<Instant> = None;
        let mut shutdown_seen = false;
        // Frames that arrived with the upgrade request.
        if !self.rbuf.is_empty() {
            Box::pin(self.process()).await;
        }
        loop {
            if closing.is_none() {
                match self.conn.out.take(&mut wbuf) {
                    (Some(c), _) => {
                        if matches!(
                            c.code,
                            close::POLICY | close::SESSION_ENDED | close::TOO_SLOW
                        ) {
                            tracing::info!(
                                user = %self.conn.user.name,
                                code = c.code,
                                reason = c.reason,
                                "websocket closed with {}: {}",
                                c.code,
                                c.reason
                            );
                        }
                        wbuf.extend_from_slice(&frame::close_frame(c.code, c.reason));
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    (None, true) => {
                        let n = self.core.write_room_mates_presence(self.conn, &mut wbuf);
                        self.conn.out.taken_extra(n);
                    }
                    (None, false) => {}
                }
            }
            while wpos < wbuf.len() {
                match self.stream.try_write(&wbuf[wpos..]) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        wpos += n;
                        self.conn.out.written(n);
                        Metrics::add(&self.core.metrics.bytes_out_total, n as u64);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            // TLS: records rustls encrypted but the socket did not take yet.
            let flushed = self.stream.try_flush()?;
            if wpos == wbuf.len() {
                if closing.is_some() && flushed {
                    return Ok(());
                }
                wpos = 0;
                // An idle connection keeps no write buffer.
                wbuf = Vec::new();
            }
            let pending = !wbuf.is_empty() || !flushed;
            let deadline = closing.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = shutdown.changed(), if !shutdown_seen => {
                    shutdown_seen = true;
                    if r.is_ok() {
                        self.conn.out.close(close::GOING_AWAY, "server shutting down");
                    }
                }
                r = self.stream.readable(), if closing.is_none() => {
                    r?;
                    if self.read()? {
                        return Ok(());
                    }
                    // Boxed: handling a frame can await the store, and that future is large;
                    // boxing keeps it off every idle connection's task.
                    Box::pin(self.process()).await;
                }
                r = self.stream.writable(), if pending => r?,
                _ = self.conn.out.changed(), if !pending && closing.is_none() => {}
                _ = sleep_until(deadline), if closing.is_some() => return Ok(()),
            }
        }
    }

    /// Reads what is available into `rbuf`; true at end of stream.
    fn read(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    total += n;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if total > 0 {
            self.conn.last_recv.store(now_ms(), Ordering::Relaxed);
        }
        Ok(false)
    }

    /// Handles every whole frame in `rbuf`.
    async fn process(&mut self) {
        let mut used = 0;
        while !self.conn.out.is_closing() {
            match frame::parse(&self.rbuf[used..], MAX_WS_MESSAGE) {
                Ok(Some((f, n))) => {
                    used += n;
                    if let Err(c) = self.on_frame(f).await {
                        self.conn.out.close(c.code, c.reason);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.close_for(&e);
                    break;
                }
            }
        }
        self.rbuf.drain(..used.min(self.rbuf.len()));
        if self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
    }

    fn close_for(&self, e: &FrameError) {
        self.conn.out.close(e.close_code(), e.reason());
    }

    async fn on_frame(&mut self, f: InFrame) -> Result<(), Close> {
        let fail = |code, reason| Err(Close { code, reason });
        match f.opcode {
            OpCode::Control(Control::Ping) => {
                self.core.push(self.conn, &frame::pong(&f.payload));
                Ok(())
            }
            OpCode::Control(Control::Pong) => Ok(()),
            OpCode::Control(Control::Close) => {
                let answer = close_answer(&f.payload);
                fail(answer.code, answer.reason)
            }
            OpCode::Data(Data::Continue) => {
                let Some((opcode, mut payload)) = self.message.take() else {
                    return fail(close::PROTOCOL, "continuation without a message");
                };
                if payload.len() + f.payload.len() > MAX_WS_MESSAGE {
                    return fail(close::TOO_BIG, "message too big");
                }
                payload.extend_from_slice(&f.payload);
                if f.fin {
                    self.on_message(opcode, payload).await
                } else {
                    self.message = Some((opcode, payload));
                    Ok(())
                }
            }
            OpCode::Data(_) if self.message.is_some() => {
                fail(close::PROTOCOL, "new message inside a fragmented one")
            }
            OpCode::Data(_) if !f.fin => {
                self.message = Some((f.opcode, f.payload));
                Ok(())
            }
            OpCode::Data(_) => self.on_message(f.opcode, f.payload).await,
            OpCode::Control(Control::Reserved(_)) => fail(close::PROTOCOL, "reserved opcode"),
        }
    }

    async fn on_message(&mut self, opcode: OpCode, payload: Vec<u8>) -> Result<(), Close> {
        if opcode != OpCode::Data(Data::Text) {
            self.error("bad_frame", "frames must be JSON text", None, None);
            return Ok(());
        }
        let Ok(text) = String::from_utf8(payload) else {
            return Err(Close {
                code: close::INVALID_DATA,
                reason: "text frame is not UTF-8",
            });
        };
        let parsed: ClientFrame = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("not a frame this server knows: {e}");
                self.error("bad_frame", &msg, None, None);
                return Ok(());
            }
        };
        match parsed {
            ClientFrame::Send { room, text, nonce } => {
                match self.core.rate_check(self.conn) {
                    Ok(()) => {}
                    Err(None) => {
                        return Err(Close {
                            code: close::POLICY,
                            reason: "sending far over the rate limit",
                        })
                    }
                    Err(Some(e)) => {
                        self.chat_error(&e, nonce.as_ref());
                        return Ok(());
                    }
                }
                let result = match self.core.parse_send(&text) {
                    Ok(Posted::Command(line)) => {
                        match commands::run(self.core, &self.conn.user, &room, line).await {
                            Ok(reply) => {
                                let f = ServerFrame::Reply {
                                    nonce: nonce.as_ref(),
                                    command: reply.command,
                                    text: reply.text,
                                    data: reply.data,
                                };
                                self.core.send_frame(self.conn, &f);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Ok(Posted::Message(text)) => self.post(room, text, false, nonce.clone()).await,
                    Ok(Posted::Action(text)) => self.post(room, text, true, nonce.clone()).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    self.chat_error(&e, nonce.as_ref());
                }
            }
            ClientFrame::Read { room, seq, nonce } => {
                let user = &self.conn.user;
                if let Err(e) = self.core.mark_read(user, &room, seq, Some(self.conn)) {
                    self.chat_error(&e, nonce.as_ref());
                }
            }
            ClientFrame::Typing { room, nonce } => {
                if let Err(e) = self.core.typing(self.conn, &room) {
                    self.chat_error(&e, nonce.as_ref());
                }
            }
            ClientFrame::Edit {
                room,
                seq,
                text,
                nonce,
            } => {
                if let Err(e) = self.rate_limited(nonce.as_ref())? {
                    self.chat_error(&e, nonce.as_ref());
                    return Ok(());
                }
                let cmd = Command::Edit {
                    room,
                    seq,
                    text: Some(text),
                    nonce: nonce.clone(),
                };
                if let Err(e) = self.core.submit(Caller::conn(self.conn), cmd).await {
                    self.chat_error(&e, nonce.as_ref());
                }
            }
            ClientFrame::Delete { room, seq, nonce } => {
                if let Err(e) = self.rate_limited(nonce.as_ref())? {
                    self.chat_error(&e, nonce.as_ref());
                    return Ok(());
                }
                let cmd = Command::Edit {
                    room,
                    seq,
                    text: None,
                    nonce: nonce.clone(),
                };
                if let Err(e) = self.core.submit(Caller::conn(self.conn), cmd).await {
                    self.chat_error(&e, nonce.as_ref());
                }
            }
            ClientFrame::Sync { room, since, nonce } => {
                match self.core.sync_frame(&self.conn.user, &room, since) {
                    Ok(f) => self.core.push(self.conn, &f),
                    Err(e) => self.chat_error(&e, nonce.as_ref()),
                }
            }
        }
        Ok(())
    }

    /// Submits a message (`action`: a `/me` action) from a `send` frame; the copy this
    /// connection gets carries `nonce`, its acknowledgement.
    async fn post(
        &self,
        room: String,
        text: String,
        action: bool,
        nonce: Option<serde_json::Value>,
    ) -> Result<(), ChatError> {
        let cmd = Command::Post {
            room,
            text,
            action,
            nonce,
        };
        self.core
            .submit(Caller::conn(self.conn), cmd)
            .await
            .map(drop)
    }

    /// The message rate limit for an edit or deletion: `Ok(Err(e))` to answer with an
    /// error, `Err` to close the connection.
    fn rate_limited(
        &self,
        _nonce: Option<&serde_json::Value>,
    ) -> Result<Result<(), ChatError>, Close> {
        match self.core.rate_check(self.conn) {
            Ok(()) => Ok(Ok(())),
            Err(None) => Err(Close {
                code: close::POLICY,
                reason: "sending far over the rate limit",
            }),
            Err(Some(e)) => Ok(Err(e)),
        }
    }

    fn chat_error(&self, e: &ChatError, nonce: Option<&serde_json::Value>) {
        self.error(e.code(), &e.to_string(), nonce, e.retry_after_ms());
    }

    fn error(
        &self,
        code: &str,
        message: &str,
        nonce: Option<&serde_json::Value>,
        retry_after_ms: Option<u64>,
    ) {
        let f = ServerFrame::Error {
            code,
            message: message.to_string(),
            nonce,
            retry_after_ms,
        };
        self.core.send_frame(self.conn, &f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_answers() {
        let with = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
        #[rustfmt::skip]
        let cases: [(Vec<u8>, u16); 16] = [
            (vec![], 1000), (vec![3], 1002), (with(1000, b"bye"), 1000), (with(1003, b""), 1003),
            (with(1004, b""), 1002), (with(1005, b""), 1002), (with(1006, b""), 1002),
            (with(1007, b""), 1007), (with(1012, b""), 1012), (with(1014, b""), 1014),
            (with(1015, b""), 1002), (with(2999, b""), 1002), (with(3000, b""), 3000),
            (with(4999, b""), 4999), (with(5000, b""), 1002), (with(4000, &[0xc3]), 1007),
        ];
        for (payload, want) in cases {
            assert_eq!(close_answer(&payload).code, want, "{payload:?}");
        }
        assert!(!may_be_sent(999) && !may_be_sent(0) && !may_be_sent(u16::MAX));
    }
}
