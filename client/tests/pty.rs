//! Black-box tests on a pseudo-terminal: the built `parley-cli` runs as a child whose
//! standard input, output and error are the slave side of a pty (so it is interactive:
//! rustyline edits the line, passwords are asked for without echo, output is coloured),
//! against a real `parley-server` child on `127.0.0.1:0`. The other users act over the
//! REST API and a WebSocket of their own, straight from the test.
//!
//! # The terminal
//! The test holds the master side. A reader thread feeds everything the client writes
//! into a [`vt100`] screen of 40 rows by 120 columns (what a user would see: the prompt
//! line and where the cursor is), and into a transcript with the escape sequences
//! stripped (what was printed, in order, for matching text). Keys are bytes written to
//! the master; Enter is `\r`, as a terminal sends it.
//!
//! Lines are typed only while rustyline is reading one: it switches bracketed paste on
//! (`ESC [ ? 2004 h`) right after putting the terminal in raw mode for each `readline`,
//! and off when it returns, so counting those tells when the next line may be typed.
//! Typing earlier would reach a terminal in cooked mode, where the tty itself echoes and
//! turns `\r` into `\n`, which is not what a user at a prompt does.
//!
//! Every wait waits for output with a deadline; nothing sleeps to synchronize.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};
use parley_cli::api::{Api, ApiError};
use parley_cli::http::Endpoint;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

mod common;

use common::server_bin;

const PASSWORD: &str = "correct-horse";
const WAIT: Duration = Duration::from_secs(10);
const ROWS: u16 = 40;
const COLS: u16 = 120;

// ----- the server (as in tests/cli.rs) ------------------------------------------------

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// An in-memory server with fast password hashing.
    fn start() -> Server {
        let mut child = Command::new(server_bin())
            .args(["--bind", "127.0.0.1:0", "--ephemeral"])
            .args(["--pbkdf2-iterations", "1000", "--min-password-length", "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn parley-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(l)) => l,
            other => panic!("server printed no first line: {other:?}"),
        };
        // Keep draining so the server never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        let addr = first
            .strip_prefix("parley listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        Server { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn api(&self) -> Api {
        Api::new(Endpoint::parse(&self.url()).expect("server url"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the terminal -------------------------------------------------------------------

/// Escape-sequence stripper, fed in chunks (a sequence may span two reads).
#[derive(Default)]
struct Strip {
    state: StripState,
    seq: Vec<u8>,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum StripState {
    #[default]
    Text,
    Esc,
    /// `ESC (` and the like: one more byte.
    EscCharset,
    Csi,
    Osc,
    OscEsc,
}

/// What the reader thread keeps of the client's output.
struct Term {
    screen: vt100::Parser,
    /// Everything printed, escape sequences and control characters (but `\n`) removed.
    text: Vec<u8>,
    strip: Strip,
    /// How many `readline`s began (bracketed paste switched on).
    readlines: usize,
    /// Inside a `readline` now: raw mode, keys go to the line editor.
    reading: bool,
    /// The master read end of file or an error: the client closed the terminal.
    closed: bool,
}

impl Term {
    fn feed(&mut self, bytes: &[u8]) {
        self.screen.process(bytes);
        for &b in bytes {
            let s = &mut self.strip;
            s.state = match s.state {
                StripState::Text => match b {
                    0x1b => StripState::Esc,
                    b'\n' | b'\t' => {
                        self.text.push(b);
                        StripState::Text
                    }
                    0..=0x1f | 0x7f => StripState::Text,
                    _ => {
                        self.text.push(b);
                        StripState::Text
                    }
                },
                StripState::Esc => match b {
                    b'[' => {
                        s.seq.clear();
                        StripState::Csi
                    }
                    b']' => StripState::Osc,
                    b'(' | b')' | b'*' | b'+' | b'#' => StripState::EscCharset,
                    _ => StripState::Text,
                },
                StripState::EscCharset => StripState::Text,
                StripState::Csi => {
                    s.seq.push(b);
                    if (0x40..=0x7e).contains(&b) {
                        match &s.seq[..] {
                            b"?2004h" => {
                                self.readlines += 1;
                                self.reading = true;
                            }
                            b"?2004l" => self.reading = false,
                            _ => {}
                        }
                        StripState::Text
                    } else {
                        StripState::Csi
                    }
                }
                StripState::Osc => match b {
                    0x07 => StripState::Text,
                    0x1b => StripState::OscEsc,
                    _ => StripState::Osc,
                },
                StripState::OscEsc => StripState::Text,
            };
        }
    }

    /// The row the cursor is on, trailing blanks removed.
    fn cursor_row(&self) -> String {
        let s = self.screen.screen();
        let (row, _) = s.cursor_position();
        s.rows(0, COLS)
            .nth(usize::from(row))
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    }

    /// The visible rows, trailing blank rows removed.
    fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .screen
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_owned())
            .collect();
        while rows.last().is_some_and(String::is_empty) {
            rows.pop();
        }
        rows
    }
}

struct Shared {
    term: Mutex<Term>,
    changed: Condvar,
}

/// `parley-cli` on a pseudo-terminal.
struct Pty {
    name: String,
    child: Child,
    /// The master side, to type on.
    keys: File,
    shared: Arc<Shared>,
    /// `readlines` when Enter was last typed: the next line waits for a later one.
    answered: usize,
}

impl Pty {
    /// Start `parley-cli --server URL ARGS…` on a fresh 120x40 pty, with TERM=xterm and no
    /// password in the environment (it is asked for on the terminal).
    fn start(name: &str, server: &str, args: &[&str]) -> Pty {
        let size = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        // Not inherited by children spawned meanwhile by other tests' threads: the pty
        // closes when this client exits.
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("set close-on-exec");
        }
        let slave: OwnedFd = pty.slave;
        let child = {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley-cli"));
            cmd.args(["--server", server])
                .args(args)
                .env("TERM", "xterm")
                .env_remove("NO_COLOR")
                .env_remove("PARLEY_PASSWORD")
                .env_remove("PARLEY_SERVER")
                .stdin(Stdio::from(slave.try_clone().expect("dup slave")))
                .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
                .stderr(Stdio::from(slave));
            // SAFETY: only async-signal-safe calls between fork and exec. A session of
            // its own with the pty as controlling terminal, as a terminal emulator
            // gives its shell: the line discipline's signals and job control are the
            // client's alone, and none reach the test runner.
            unsafe {
                cmd.pre_exec(|| {
                    nix::unistd::setsid()?;
                    if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            // The command (and its copies of the slave) is dropped at the end of this
            // block: once the client exits, reading the master ends.
            cmd.spawn().expect("spawn parley-cli on the pty")
        };
        let master = File::from(pty.master);
        let keys = master.try_clone().expect("dup master");
        let shared = Arc::new(Shared {
            term: Mutex::new(Term {
                screen: vt100::Parser::new(
                    NonZeroU16::new(ROWS).expect("rows"),
                    NonZeroU16::new(COLS).expect("columns"),
                    0,
                ),
                text: Vec::new(),
                strip: Strip::default(),
                readlines: 0,
                reading: false,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let sh = shared.clone();
        thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 8192];
            loop {
                // EIO once every slave descriptor is closed: the client is gone.
                let n = master.read(&mut buf).unwrap_or(0);
                // A test that failed while holding the lock poisoned it: stop quietly.
                let Ok(mut t) = sh.term.lock() else { return };
                if n == 0 {
                    t.closed = true;
                } else {
                    t.feed(&buf[..n]);
                }
                drop(t);
                sh.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Pty {
            name: name.to_owned(),
            child,
            keys,
            shared,
            answered: 0,
        }
    }

    fn term(&self) -> MutexGuard<'_, Term> {
        self.shared
            .term
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until `pred` holds of the terminal; panics with the screen after [`WAIT`].
    fn wait_until<T>(&self, what: &str, mut pred: impl FnMut(&Term) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut t = self.term();
        loop {
            if let Some(v) = pred(&t) {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = if t.closed {
                    "the client exited"
                } else {
                    "timed out"
                };
                panic!(
                    "{}: {why} waiting for {what}\n--- screen ---\n{}\n--- transcript ---\n{}\n---",
                    self.name,
                    t.rows().join("\n"),
                    String::from_utf8_lossy(&t.text)
                );
            }
            t = self
                .shared
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Position in the transcript, for [`Pty::wait_new`].
    fn mark(&self) -> usize {
        self.term().text.len()
    }

    /// Wait for `needle` in the transcript after `mark`; returns the transcript's line
    /// holding it (with whatever the line editor drew on the same line).
    fn wait_new(&self, mark: usize, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |t| {
            let text = String::from_utf8_lossy(&t.text[mark.min(t.text.len())..]).into_owned();
            let at = text.find(needle)?;
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            Some(text[start..end].to_owned())
        })
    }

    /// The transcript after `mark`.
    fn since(&self, mark: usize) -> String {
        let t = self.term();
        String::from_utf8_lossy(&t.text[mark.min(t.text.len())..]).into_owned()
    }

    /// Wait until the line editor reads a line we have not answered yet.
    fn wait_reading(&self) {
        let answered = self.answered;
        self.wait_until("the line editor to read a line", |t| {
            (t.reading && t.readlines > answered).then_some(())
        });
    }

    fn keys(&mut self, bytes: &[u8]) {
        self.keys.write_all(bytes).expect("type on the pty");
        self.keys.flush().expect("flush the pty");
    }

    /// Type `text` at the prompt, without Enter.
    fn type_text(&mut self, text: &str) {
        self.wait_reading();
        self.keys(text.as_bytes());
    }

    /// Press Enter: the line being edited is done.
    fn enter(&mut self) {
        self.wait_reading();
        let readlines = self.term().readlines;
        self.answered = readlines;
        self.keys(b"\r");
    }

    /// Type a line and press Enter.
    fn line(&mut self, text: &str) {
        self.type_text(text);
        self.enter();
    }

    /// Wait for the password prompt `prompt` and type `password`.
    fn password(&mut self, mark: usize, prompt: &str, password: &str) {
        self.wait_new(mark, prompt);
        self.line(password);
    }

    /// `/register NAME`: the password twice, without echo; wait until connected.
    fn register(&mut self, name: &str) {
        let m = self.mark();
        self.line(&format!("/register {name}"));
        self.password(m, &format!("new password for {name}: "), PASSWORD);
        self.password(m, "repeat the password: ", PASSWORD);
        self.wait_new(m, &format!("logged in as {name}"));
        self.wait_new(m, &format!("connected as {name}"));
        self.assert_no_echo(PASSWORD);
    }

    /// Started with `--user NAME`: answer the password prompt, wait until connected.
    fn log_in(&mut self, name: &str) {
        self.password(0, &format!("password for {name}: "), PASSWORD);
        self.wait_new(0, &format!("connected as {name}"));
        self.assert_no_echo(PASSWORD);
    }

    fn assert_no_echo(&self, secret: &str) {
        let t = self.term();
        let text = String::from_utf8_lossy(&t.text);
        assert!(
            !text.contains(secret),
            "{}: the password was shown:\n{text}",
            self.name
        );
    }

    /// `/create NAME`; returns the new room's id.
    fn create(&mut self, room: &str) -> String {
        let m = self.mark();
        self.line(&format!("/create {room}"));
        let line = self.wait_new(m, &format!("created {room} (id "));
        line.split("(id ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .expect("room id in the create notice")
            .to_owned()
    }

    /// Run a command and wait until it is done (the next prompt is up); returns what it
    /// printed.
    fn command(&mut self, line: &str) -> String {
        let m = self.mark();
        self.line(line);
        self.wait_reading();
        self.since(m)
    }

    /// Wait for the client to exit by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for parley-cli") {
                return status;
            }
            if Instant::now() >= deadline {
                let rows = self.term().rows().join("\n");
                panic!("{}: did not exit\n--- screen ---\n{rows}\n---", self.name);
            }
            // Polling for a child's exit: there is no output to wait on.
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- other users, over the API ------------------------------------------------------

/// A user acting over REST and a WebSocket of their own.
struct User {
    name: String,
    api: Api,
    token: String,
    ws: Option<WebSocket<TcpStream>>,
    /// Every frame received, in order.
    frames: Vec<Value>,
}

impl User {
    fn register(server: &Server, name: &str) -> User {
        let api = server.api();
        api.register(name, PASSWORD, None).expect("register");
        let token = api.login(name, PASSWORD).expect("login").token;
        User {
            name: name.to_owned(),
            api,
            token,
            ws: None,
            frames: Vec::new(),
        }
    }

    /// Open the WebSocket and wait for its `hello`.
    fn connect(&mut self, server: &Server) {
        let stream = TcpStream::connect(&server.addr).expect("connect");
        let url = format!("ws://{}/api/v1/ws?token={}", server.addr, self.token);
        let (ws, _) = tungstenite::client(url, stream).expect("websocket handshake");
        // Short reads: a wait checks its deadline between them.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        self.ws = Some(ws);
        self.wait_frame(0, "hello", |f| f["type"] == "hello");
    }

    fn send_frame(&mut self, frame: Value) {
        let ws = self.ws.as_mut().expect("connected");
        ws.send(Message::text(frame.to_string()))
            .expect("send a frame");
    }

    /// Post `text` to `room` and wait for the acknowledgement; returns the entry.
    fn post(&mut self, room: &str, text: &str) -> Value {
        let nonce = format!("{}-{}", self.name, self.frames.len());
        let m = self.frames.len();
        self.send_frame(json!({"type": "send", "room": room, "text": text, "nonce": nonce}));
        self.wait_frame(m, "the acknowledgement", |f| {
            f["type"] == "entry" && f["nonce"] == nonce.as_str()
        })
    }

    /// Wait for a frame at or after index `mark` of [`User::frames`] that satisfies `pred`.
    fn wait_frame(&mut self, mark: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut checked = mark;
        loop {
            if let Some(f) = self.frames[checked..].iter().find(|f| pred(f)) {
                return f.clone();
            }
            checked = self.frames.len();
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; frames:\n{}",
                self.name,
                self.frames
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let ws = self.ws.as_mut().expect("connected");
            match ws.read() {
                Ok(Message::Text(t)) => {
                    self.frames
                        .push(serde_json::from_str(t.as_str()).expect("a JSON frame"));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{}: websocket: {e}", self.name),
            }
        }
    }
}

/// The error code of a refused call, with its status.
fn refusal<T: std::fmt::Debug>(r: Result<T, ApiError>) -> (u16, String) {
    let e = r.expect_err("the server refuses");
    (
        e.status().expect("an HTTP status"),
        e.code().expect("an error code").to_owned(),
    )
}

/// The seq in `... #N...`.
fn seq_in(line: &str) -> u64 {
    line.split('#')
        .nth(1)
        .and_then(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no #seq in {line:?}"))
}

// ----- the tests ----------------------------------------------------------------------

#[test]
fn kick_ban_and_a_private_room_from_the_terminal() {
    let server = Server::start();
    let mut alice = Pty::start("alice", &server.url(), &[]);
    alice.register("alice");
    let lobby = alice.create("lobby");
    alice.wait_new(0, "[lobby] --> alice joined");

    let carol = User::register(&server, "carol");
    let m = alice.mark();
    carol.api.join(&carol.token, &lobby).expect("carol joins");
    alice.wait_new(m, "[lobby] --> carol joined");

    // A kick: shown as it happens; she may come back.
    let m = alice.mark();
    alice.line("/kick carol spam");
    alice.wait_new(m, "[lobby] * carol was kicked by alice (spam)");
    let m = alice.mark();
    carol
        .api
        .join(&carol.token, &lobby)
        .expect("a kicked user may join again");
    alice.wait_new(m, "[lobby] --> carol joined");

    // A ban: she is out and stays out.
    let m = alice.mark();
    alice.line("/ban carol");
    alice.wait_new(m, "[lobby] * carol was banned by alice");
    assert_eq!(
        refusal(carol.api.join(&carol.token, &lobby)),
        (403, "banned".to_owned())
    );

    // A private room: a stranger neither sees it nor gets in.
    let secret = alice.create("secret");
    let m = alice.mark();
    alice.line("/visibility private");
    alice.wait_new(m, "[secret] * alice made the room private");

    let dave = User::register(&server, "dave");
    let listed = dave.api.rooms(&dave.token, "", 500).expect("list rooms");
    let ids: Vec<&str> = listed.items.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&lobby.as_str()), "{ids:?}");
    assert!(!ids.contains(&secret.as_str()), "{ids:?}");
    assert_eq!(
        refusal(dave.api.join(&dave.token, &secret)),
        (403, "room_restricted".to_owned())
    );

    // The same stranger at a terminal of his own: /rooms does not list it either.
    let mut dave_pty = Pty::start("dave", &server.url(), &["--user", "dave"]);
    dave_pty.log_in("dave");
    let listing = dave_pty.command("/rooms");
    assert!(
        listing.contains("1 room(s); * = you are in it"),
        "{listing}"
    );
    assert!(listing.contains(&lobby), "{listing}");
    assert!(
        !listing.contains(&secret) && !listing.contains("secret"),
        "{listing}"
    );
    // Alice, a member, sees both.
    let listing = alice.command("/rooms");
    assert!(listing.contains("2 room(s)"), "{listing}");
    assert!(listing.contains(&secret), "{listing}");

    for mut p in [alice, dave_pty] {
        p.line("/quit");
        let status = p.wait_exit();
        assert!(status.success(), "{}: {status}", p.name);
    }
}

#[test]
fn direct_messages_arrive_on_the_terminal_and_are_answered() {
    let server = Server::start();
    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");

    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    // Opening the DM tells bob at once (a `joined` frame), before anything is posted.
    let m = bob.mark();
    let dm = alice.api.open_dm(&alice.token, "bob").expect("open the DM");
    assert_eq!(dm.kind, "dm");
    alice.post(&dm.id, "psst, bob");
    bob.wait_new(m, "direct messages with alice are @alice");
    bob.wait_new(m, "[@alice] alice: psst, bob");

    let fm = alice.frames.len();
    let m = bob.mark();
    bob.line("/msg alice hi");
    bob.wait_new(m, "[@alice] bob: hi");
    let entry = alice.wait_frame(fm, "bob's answer", |f| {
        f["type"] == "entry" && f["from"] == "bob" && f["kind"] == "message"
    });
    assert_eq!(entry["room"], dm.id.as_str());
    assert_eq!(entry["text"], "hi");

    // The DM is listed apart, and /dm makes it current: the prompt says so.
    let listing = bob.command("/dms");
    assert!(listing.contains("1 direct message room(s)"), "{listing}");
    let out = bob.command("/dm alice");
    assert!(out.contains("current room: @alice"), "{out}");
    bob.wait_until("the DM as the prompt", |t| {
        (t.cursor_row() == "bob@@alice>").then_some(())
    });
    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

#[test]
fn unread_counts_are_told_when_the_client_starts_again() {
    let server = Server::start();
    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    let lobby = alice
        .api
        .create_room(&alice.token, "lobby", None)
        .expect("create a room")
        .id;

    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");
    let m = bob.mark();
    bob.line(&format!("/join {lobby}"));
    bob.wait_new(m, "joined lobby (id ");
    alice.post(&lobby, "before you left");
    bob.wait_new(m, "[lobby] alice: before you left");
    bob.line("/quit");
    let status = bob.wait_exit();
    assert!(status.success(), "bob's first run: {status}");

    for text in ["one", "two", "three"] {
        alice.post(&lobby, text);
    }

    let mut bob = Pty::start("bob", &server.url(), &["--user", "bob"]);
    bob.log_in("bob");
    let line = bob.wait_new(0, "unread in");
    assert!(line.contains("-- 3 unread in lobby"), "{line:?}");
    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

#[test]
fn edits_and_deletions_from_the_terminal() {
    let server = Server::start();
    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    let lobby = alice
        .api
        .create_room(&alice.token, "lobby", None)
        .expect("create a room")
        .id;

    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");
    bob.line(&format!("/join {lobby}"));
    bob.wait_new(0, "joined lobby (id ");

    let fm = alice.frames.len();
    let m = bob.mark();
    bob.line("teh txet");
    bob.wait_new(m, "[lobby] bob: teh txet");
    let posted = alice.wait_frame(fm, "bob's message", |f| {
        f["type"] == "entry" && f["from"] == "bob" && f["kind"] == "message"
    });
    let seq = posted["seq"].as_u64().expect("a seq");

    // An edit: shown live as an edit of that seq; alice gets the edit entry.
    let m = bob.mark();
    bob.line("/edit fixed text");
    let line = bob.wait_new(m, "[lobby] * bob edited #");
    assert!(line.contains(&format!("#{seq}: fixed text")), "{line:?}");
    assert_eq!(seq_in(&line[line.find("edited").expect("edited")..]), seq);
    let edit = alice.wait_frame(fm, "the edit", |f| {
        f["type"] == "entry" && f["kind"] == "edit"
    });
    assert_eq!(edit["from"], "bob");
    assert_eq!(edit["ref"], seq);
    assert_eq!(edit["text"], "fixed text");
    // History shows the latest text, marked.
    let listing = bob.command("/history 5");
    assert!(
        listing.contains(&format!("#{seq} ")) && listing.contains("bob: fixed text (edited)"),
        "{listing}"
    );

    // A deletion: shown live; alice gets the delete entry; history keeps only the mark.
    let m = bob.mark();
    bob.line("/delete");
    bob.wait_new(m, &format!("[lobby] * message #{seq} was deleted by bob"));
    let delete = alice.wait_frame(fm, "the deletion", |f| {
        f["type"] == "entry" && f["kind"] == "delete"
    });
    assert_eq!(delete["from"], "bob");
    assert_eq!(delete["ref"], seq);
    let listing = bob.command("/history 5");
    assert!(listing.contains("bob: (deleted)"), "{listing}");
    assert!(!listing.contains("fixed text (edited)"), "{listing}");

    // What alice reads over REST agrees.
    let page = alice
        .api
        .messages(&alice.token, &lobby, 20)
        .expect("read the history");
    let original = page
        .entries
        .iter()
        .find(|e| e.seq == seq)
        .expect("the message is still numbered");
    assert!(
        original.is_deleted() && original.text.is_none(),
        "{original:?}"
    );
    assert!(page
        .entries
        .iter()
        .any(|e| e.extra.refers == Some(seq) && e.from == "bob" && e.text.is_none()));

    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

#[test]
fn a_message_arriving_while_typing_leaves_the_typed_line_intact() {
    let server = Server::start();
    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    let lobby = alice
        .api
        .create_room(&alice.token, "lobby", None)
        .expect("create a room")
        .id;

    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");
    bob.line(&format!("/join {lobby}"));
    bob.wait_new(0, "joined lobby (id ");

    // Bob is half-way through a line; the room is told he is typing.
    let fm = alice.frames.len();
    bob.type_text("half a thought");
    bob.wait_until("the half-typed line", |t| {
        (t.cursor_row() == "bob@lobby> half a thought").then_some(())
    });
    alice.wait_frame(fm, "bob typing", |f| {
        f["type"] == "typing" && f["username"] == "bob" && f["room"] == lobby.as_str()
    });

    // Alice starts typing, then posts: both show above the prompt.
    let m = bob.mark();
    alice.send_frame(json!({"type": "typing", "room": lobby}));
    bob.wait_new(m, "* alice is typing in lobby…");
    alice.post(&lobby, "sorry to interrupt");
    bob.wait_new(m, "[lobby] alice: sorry to interrupt");

    // The typed line is intact on the prompt line, under them, the cursor at its end.
    let prompt = "bob@lobby> half a thought";
    let rows = bob.wait_until("the prompt line below the new lines", |t| {
        let rows = t.rows();
        let (row, col) = t.screen.screen().cursor_position();
        let last = rows.len().checked_sub(1)?;
        (usize::from(row) == last
            && rows[last] == prompt
            && usize::from(col) == prompt.chars().count())
        .then_some(rows)
    });
    let at = |needle: &str| rows.iter().position(|r| r.contains(needle));
    let typing_row = at("* alice is typing in lobby…").expect("typing notice on screen");
    let message_row = at("[lobby] alice: sorry to interrupt").expect("message on screen");
    assert!(
        typing_row < message_row && message_row < rows.len() - 1,
        "{rows:#?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains("half a thought")).count(),
        1,
        "the typed line is drawn once: {rows:#?}"
    );

    // Typing goes on where it was; Enter sends exactly what was typed.
    let fm = alice.frames.len();
    bob.type_text(", finished");
    bob.enter();
    let entry = alice.wait_frame(fm, "bob's message", |f| {
        f["type"] == "entry" && f["from"] == "bob" && f["kind"] == "message"
    });
    assert_eq!(entry["text"], "half a thought, finished");
    bob.wait_new(m, "[lobby] bob: half a thought, finished");

    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

#[test]
fn enter_pressed_while_messages_pour_in_never_freezes_the_client() {
    let server = Server::start();
    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    let lobby = alice
        .api
        .create_room(&alice.token, "lobby", None)
        .expect("create a room")
        .id;

    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");
    let m = bob.mark();
    bob.line(&format!("/join {lobby}"));
    bob.wait_new(m, "joined lobby (id ");

    // Alice posts in bursts (within the server's burst of 30); bob presses Enter on a
    // line of his while they arrive. Messages the editor holds when a line ends must
    // neither be lost nor stop the client from reading the next line.
    let fm = alice.frames.len();
    let mut sent = Vec::new();
    for round in 0..3 {
        for k in 0..8 {
            alice.send_frame(
                json!({"type": "send", "room": lobby, "text": format!("burst {round}-{k}")}),
            );
        }
        for k in 0..2 {
            let line = format!("bob {round}-{k}");
            bob.line(&line);
            sent.push(line);
        }
    }
    for round in 0..3 {
        for k in 0..8 {
            bob.wait_new(m, &format!("[lobby] alice: burst {round}-{k}"));
        }
    }
    for line in &sent {
        bob.wait_new(m, &format!("[lobby] bob: {line}"));
        alice.wait_frame(fm, line, |f| {
            f["type"] == "entry" && f["text"] == line.as_str()
        });
    }
    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

/// A TCP relay to the server that can cut every connection through it and, while down,
/// refuse new ones: the connection drops and stays down until [`Relay::up`].
struct Relay {
    addr: String,
    down: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (d, o, up) = (down.clone(), open.clone(), upstream.to_owned());
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let Ok(server) = TcpStream::connect(&up) else {
                    continue;
                };
                let pair = [client.try_clone(), server.try_clone()];
                let [Ok(c2), Ok(s2)] = pair else { continue };
                if let Ok(mut v) = o.lock() {
                    v.extend([c2.try_clone(), s2.try_clone()].into_iter().flatten());
                }
                let (mut c_in, mut s_out) = (client, s2);
                let (mut s_in, mut c_out) = (server, c2);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Relay { addr, down, open }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cut every connection and refuse new ones.
    fn down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for s in open.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn up(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn the_password_rules_come_first_and_offline_leaves_the_prompt_when_the_connection_is_back() {
    let server = Server::start();
    let relay = Relay::start(&server.addr);
    let mut bob = Pty::start("bob", &relay.url(), &[]);

    // The rules are on the screen before the password is asked for.
    let m = bob.mark();
    bob.register("bob");
    let text = bob.since(m);
    let rules = text
        .find("passwords: 15 to 1024 bytes")
        .expect("the rules are shown");
    let asked = text
        .find("new password for bob: ")
        .expect("the password is asked for");
    assert!(rules < asked, "{text}");
    bob.create("lobby");

    // Down: a line entered now gets the offline prompt.
    let m = bob.mark();
    relay.down();
    bob.wait_new(m, "connection lost");
    bob.enter();
    bob.type_text("half");
    bob.wait_until("the offline prompt", |t| {
        (t.cursor_row() == "bob@lobby (offline)> half").then_some(())
    });

    // Back: the prompt says so by itself, the typed line intact, before any Enter.
    relay.up();
    bob.wait_new(m, "reconnected");
    let row = bob.wait_until("the prompt without (offline)", |t| {
        let row = t.cursor_row();
        (!row.contains("offline") && row.ends_with("half")).then_some(row)
    });
    assert!(row.starts_with("bob@lobby> "), "{row:?}");
    bob.type_text(" a line");
    bob.enter();
    bob.wait_new(m, "[lobby] bob: half a line");
    bob.line("/quit");
    assert!(bob.wait_exit().success());
}

#[test]
fn losing_the_current_room_redraws_the_prompt_at_once_and_keeps_the_typed_line() {
    let server = Server::start();
    let mut alice = User::register(&server, "alice");
    alice.connect(&server);
    let room = |name: &str| {
        alice
            .api
            .create_room(&alice.token, name, None)
            .expect("create a room")
            .id
    };
    let (den, zo, lobby) = (room("den"), room("zo"), room("lobby"));

    let mut bob = Pty::start("bob", &server.url(), &[]);
    bob.register("bob");
    for id in [&den, &zo, &lobby] {
        bob.command(&format!("/join {id}"));
    }
    // The prompt line as a user sees it, the cursor at the end of `want`.
    let prompt_is = |bob: &Pty, want: &str| {
        bob.wait_until(&format!("the prompt line {want:?}"), |t| {
            let (_, col) = t.screen.screen().cursor_position();
            let at_end = usize::from(col) == want.chars().count();
            (t.cursor_row() == want.trim_end() && at_end).then_some(())
        });
    };

    // Kicked from the current room: the prompt moves to the room it falls back to (the
    // first by name) at once, padded to the width the line editor measured.
    bob.type_text("half a thought");
    prompt_is(&bob, "bob@lobby> half a thought");
    let m = bob.mark();
    alice.send_frame(json!({"type": "send", "room": lobby, "text": "/kick bob", "nonce": "k"}));
    bob.wait_new(m, "you are no longer in lobby");
    prompt_is(&bob, "bob@den>   half a thought");
    // Typing goes on where it was, and Enter sends the line to the new current room.
    bob.type_text(", more");
    prompt_is(&bob, "bob@den>   half a thought, more");
    let fm = alice.frames.len();
    bob.enter();
    let entry = alice.wait_frame(fm, "bob's message", |f| {
        f["type"] == "entry" && f["from"] == "bob" && f["kind"] == "message"
    });
    assert_eq!(entry["room"], den.as_str());
    assert_eq!(entry["text"], "half a thought, more");
    prompt_is(&bob, "bob@den> ");

    // Banned: a fallback with a longer name than the lost one is cut short to fit,
    // until the next line shows it whole.
    bob.command("/switch zo");
    bob.type_text("second");
    prompt_is(&bob, "bob@zo> second");
    let m = bob.mark();
    alice.send_frame(json!({"type": "send", "room": zo, "text": "/ban bob", "nonce": "b"}));
    bob.wait_new(m, "you are no longer in zo");
    prompt_is(&bob, "bob@d…> second");
    let fm = alice.frames.len();
    bob.enter();
    let entry = alice.wait_frame(fm, "bob's message", |f| {
        f["type"] == "entry" && f["from"] == "bob" && f["kind"] == "message"
    });
    assert_eq!(
        (entry["room"].as_str(), entry["text"].as_str()),
        (Some(den.as_str()), Some("second"))
    );
    prompt_is(&bob, "bob@den> ");

    // The last room deleted: no room on the prompt.
    bob.type_text("third");
    let m = bob.mark();
    alice
        .api
        .delete_room(&alice.token, &den)
        .expect("delete the room");
    bob.wait_new(m, "den was deleted by alice");
    prompt_is(&bob, "bob>     third");
    let m = bob.mark();
    bob.enter();
    bob.wait_new(m, "no current room");
    prompt_is(&bob, "bob> ");

    bob.line("/quit");
    assert!(bob.wait_exit().success());
}
