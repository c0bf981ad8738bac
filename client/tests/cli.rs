//! Black-box tests: the built `parley-cli` runs as a child process, driven through its
//! standard input (so in non-interactive mode), against a real `parley-server` child on
//! `127.0.0.1:0`.
//!
//! # Finding the server
//! `parley-server` belongs to the workspace's root package, which Cargo does not build
//! for this crate's tests. [`server_bin`] uses, in order:
//! 1. `PARLEY_SERVER_BIN`, if set;
//! 2. otherwise it runs `cargo build --bin parley-server` once per test run, in the
//!    workspace, into the same target directory as this test binary (found from
//!    `current_exe()`: `<target>/<profile>/deps/cli-HASH`), so the server is as fresh as
//!    the sources (a no-op when it is). Cargo holds no build lock while tests run.
//!
//! Every wait here waits for a line of output, with a deadline; nothing sleeps to
//! synchronize.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

mod common;

use common::server_bin;

const PASSWORD: &str = "correct-horse";
const WAIT: Duration = Duration::from_secs(30);

// ----- the server ---------------------------------------------------------------------

struct Server {
    child: Child,
    addr: String,
    /// Its log so far (it also goes on to this process's stderr).
    log: Arc<Mutex<String>>,
}

impl Server {
    /// An in-memory server with fast password hashing.
    fn start(extra: &[&str]) -> Server {
        let mut args = vec!["--bind", "127.0.0.1:0", "--ephemeral"];
        args.extend_from_slice(extra);
        Server::spawn(&args).expect("server starts")
    }

    /// A server keeping its data in `dir`, on `bind`.
    fn durable(dir: &Path, bind: &str) -> Option<Server> {
        let dir = dir.to_str().expect("utf-8 temp path");
        Server::spawn(&["--bind", bind, "--data-dir", dir, "--fsync", "always"])
    }

    /// Start again on `dir` and `bind`, once the address is free.
    fn restart(dir: &Path, bind: &str) -> Server {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = Server::durable(dir, bind) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not restart on {bind}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(args: &[&str]) -> Option<Server> {
        let mut child = Command::new(server_bin())
            .args(args)
            .args(["--pbkdf2-iterations", "1000", "--min-password-length", "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn parley-server");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        };
        // Keep draining so the server never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        let addr = first
            .strip_prefix("parley listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        Some(Server { child, addr, log })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin setup code the server logged at start (an `--admin` name has no account).
    fn admin_setup_code(&self) -> String {
        let says = "with the invite code ";
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some((_, after)) = log.rsplit_once(says) {
                if let Some(code) = after.split_whitespace().next() {
                    return code.to_owned();
                }
            }
            assert!(Instant::now() < deadline, "no admin setup code in: {log}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the client ---------------------------------------------------------------------

struct Client {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Everything printed so far, stdout and (prefixed) stderr.
    log: Vec<String>,
}

impl Client {
    fn start(name: &str, server: &str, password: &str, extra: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley-cli"))
            .args(["--server", server])
            .args(extra)
            .env("PARLEY_PASSWORD", password)
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn parley-cli");
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let tx2 = tx.clone();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("[stderr] {l}"));
            }
        });
        Client {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to client");
        stdin.flush().expect("flush to client");
    }

    /// Position in the log, for [`Client::wait_after`].
    fn mark(&self) -> usize {
        self.log.len()
    }

    /// Wait for a line, printed at or after `mark`, that satisfies `pred`.
    fn wait_after(&mut self, mark: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut checked = mark;
        loop {
            if let Some(l) = self.log[checked..].iter().find(|l| pred(l)) {
                return l.clone();
            }
            checked = self.log.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("timed out waiting for {what}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("exited while waiting for {what}"))
                }
            }
        }
    }

    /// Wait for a line containing `needle` anywhere in the output so far or to come.
    fn wait_for(&mut self, needle: &str) -> String {
        self.wait_after(0, needle, |l| l.contains(needle))
    }

    /// Wait for a line containing `needle` printed after `mark`.
    fn wait_new(&mut self, mark: usize, needle: &str) -> String {
        self.wait_after(mark, needle, |l| l.contains(needle))
    }

    /// Wait for a timeline line `HH:MM [room] rest`.
    fn wait_entry(&mut self, room: &str, rest: &str) -> String {
        let want = format!(" [{room}] {rest}");
        self.wait_after(0, &format!("HH:MM{want}"), |l| is_entry(l, &want))
    }

    /// Wait for a timeline line `HH:MM [room] rest` printed after `mark`.
    fn wait_entry_new(&mut self, mark: usize, room: &str, rest: &str) -> String {
        let want = format!(" [{room}] {rest}");
        self.wait_after(mark, &format!("HH:MM{want}"), |l| is_entry(l, &want))
    }

    /// How many timeline lines `HH:MM [room] rest` were printed so far.
    fn count_entry(&self, room: &str, rest: &str) -> usize {
        let want = format!(" [{room}] {rest}");
        self.log.iter().filter(|l| is_entry(l, &want)).count()
    }

    /// Close standard input and wait for the client to exit by itself.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            while let Ok(l) = self.lines.try_recv() {
                self.log.push(l);
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // Collect what is still in the pipes.
                    while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                        self.log.push(l);
                    }
                    return (status, std::mem::take(&mut self.log));
                }
                Ok(None) if Instant::now() < deadline => {
                    if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                        self.log.push(l);
                    }
                }
                _ => self.fail("did not exit after end of input"),
            }
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        panic!(
            "client {}: {why}\n--- its output ---\n{}\n---",
            self.name,
            self.log.join("\n")
        );
    }

    /// Register `name` (PARLEY_PASSWORD) and wait until logged in and connected.
    fn register(&mut self, name: &str) {
        let m = self.mark();
        self.send(&format!("/register {name}"));
        self.wait_new(m, &format!("logged in as {name}"));
        self.wait_new(m, &format!("connected as {name}"));
    }

    /// `/create NAME`; returns the new room's id.
    fn create(&mut self, room: &str) -> String {
        let m = self.mark();
        self.send(&format!("/create {room}"));
        let line = self.wait_new(m, &format!("created {room} (id "));
        line.split("(id ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .expect("room id in the create notice")
            .to_owned()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A script's exit status is 1 when it printed an error (a `! ` line: a refusal, a
/// failed command), 0 otherwise. These tests' connections never drop, so every `! `
/// line is a failure.
fn exit_tells_errors(name: &str, status: ExitStatus, log: &[String]) {
    let failed = log.iter().any(|l| l.starts_with("! "));
    assert_eq!(
        status.code(),
        Some(i32::from(failed)),
        "{name}: {status}\n{}",
        log.join("\n")
    );
}

/// `HH:MM` followed by exactly `rest`.
fn is_entry(line: &str, rest: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 5
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b':'
        && b[3].is_ascii_digit()
        && b[4].is_ascii_digit()
        && &line[5..] == rest
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "parley-cli-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// ----- a relay that can hold a message in flight --------------------------------------

/// A TCP relay between a client and the server. While it swallows, it passes the client's
/// bytes on and drops the server's: a message reaches the server, its acknowledgement
/// never reaches the client. [`Relay::cut`] then ends every connection through it, so the
/// message is in flight when the connection dies.
struct Relay {
    addr: String,
    shared: Arc<RelayShared>,
}

struct RelayShared {
    upstream: String,
    swallow: AtomicBool,
    /// Both sockets of every connection made so far, to cut them.
    open: Mutex<Vec<TcpStream>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let shared = Arc::new(RelayShared {
            upstream: upstream.to_owned(),
            swallow: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                // Server down: dropping the client's socket refuses it in turn.
                let Ok(server) = TcpStream::connect(&sh.upstream) else {
                    continue;
                };
                let clones = [client.try_clone(), server.try_clone()];
                let [Ok(c2), Ok(s2)] = clones else { continue };
                sh.open
                    .lock()
                    .expect("relay lock")
                    .extend([c2.try_clone(), s2.try_clone()].into_iter().flatten());
                thread::spawn(move || pipe(client, s2, None));
                let sh = sh.clone();
                thread::spawn(move || pipe(server, c2, Some(sh)));
            }
        });
        Relay { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn swallow(&self, on: bool) {
        self.shared.swallow.store(on, Ordering::SeqCst);
    }

    fn cut(&self) {
        for s in self.shared.open.lock().expect("relay lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copy `from` to `to` until either ends; with `swallow`, drop what comes while it is on.
fn pipe(mut from: TcpStream, mut to: TcpStream, swallow: Option<Arc<RelayShared>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                // Pass the half-close on: the other direction may still carry an answer.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if swallow
                    .as_ref()
                    .is_some_and(|s| s.swallow.load(Ordering::SeqCst))
                {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ----- a TLS front for the server -----------------------------------------------------

/// A self-signed certificate for `127.0.0.1` and `localhost`, written as PEM to a file
/// the client can be given with `--ca-file`.
struct TestCert {
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    key_pem: String,
    pem_file: PathBuf,
}

impl TestCert {
    /// With `ca`, the certificate is also marked as a CA, as `openssl req -x509` makes
    /// them: webpki refuses those as a server's own unless they were given.
    fn new(dir: &Path, ca: bool) -> TestCert {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate names");
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let cert = params.self_signed(&key).expect("sign the certificate");
        let pem_file = dir.join(if ca { "ca.pem" } else { "server.pem" });
        std::fs::write(&pem_file, cert.pem()).expect("write the certificate");
        TestCert {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
            pem_file,
        }
    }
}

/// Terminates TLS with [`TestCert`] and passes the plain bytes to the real server: the
/// client does a real handshake, then speaks HTTPS and WSS to `parley-server` through it.
/// Counts the handshakes that completed.
struct TlsFront {
    addr: String,
    handshakes: Arc<AtomicU32>,
}

impl TlsFront {
    fn start(upstream: &str, cert: &TestCert) -> TlsFront {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
            )
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS front");
        let addr = listener.local_addr().expect("front address").to_string();
        let handshakes = Arc::new(AtomicU32::new(0));
        let count = handshakes.clone();
        let upstream = upstream.to_owned();
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                let upstream = upstream.clone();
                let count = count.clone();
                thread::spawn(move || tls_pipe(client, &upstream, config, &count));
            }
        });
        TlsFront { addr, handshakes }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// One connection through the front: both directions on one thread, polling each side
/// with a short read timeout (a timeout leaves a partial TLS record buffered in rustls).
fn tls_pipe(
    client: TcpStream,
    upstream: &str,
    config: Arc<rustls::ServerConfig>,
    handshakes: &AtomicU32,
) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let poll = Some(Duration::from_millis(5));
    if client.set_read_timeout(poll).is_err() || server.set_read_timeout(poll).is_err() {
        return;
    }
    let mut tls = rustls::StreamOwned::new(conn, client);
    let timeout = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut counted = false;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if timeout(&e) => {}
            Err(_) => break,
        }
        if !counted && !tls.conn.is_handshaking() {
            counted = true;
            handshakes.fetch_add(1, Ordering::SeqCst);
        }
        match server.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                break;
            }
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|_| tls.flush()).is_err() {
                    break;
                }
            }
            Err(e) if timeout(&e) => {}
            Err(_) => break,
        }
    }
    let _ = tls.sock.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Run a script: `--server URL`, `extra` flags, `input` on standard input; returns the
/// exit code and everything printed (stdout, then stderr).
fn script(url: &str, extra: &[&str], input: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .args(["--server", url])
        .args(extra)
        .env_remove("PARLEY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scripted client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write script");
    drop(stdin);
    let out = child.wait_with_output().expect("script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

// ----- the tests ----------------------------------------------------------------------

#[test]
fn help_lists_options_and_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .arg("--help")
        .output()
        .expect("run parley-cli --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--server",
        "--user",
        "--password-stdin",
        "PARLEY_PASSWORD",
        "/register NAME",
        "/login NAME",
        "/logout",
        "/create NAME",
        "/join ID",
        "/leave [ID|NAME]",
        "/switch ID",
        "/rooms",
        "/users",
        "/who [ID|NAME]",
        "--ca-file FILE",
        "https://",
        "/history [N]",
        "/help",
        "/quit",
        "NO_COLOR",
        "--invite-code",
        "/invite USER",
        "/kick USER",
        "/ban USER",
        "/unban USER",
        "/mute USER",
        "/unmute USER",
        "/op USER",
        "/deop USER",
        "/owner USER",
        "/topic",
        "/visibility",
        "/rename NAME",
        "/delete-room",
        "/bans",
        "/invites",
        "/password",
        "/admin invite-code",
        "/me TEXT",
        "/msg USER TEXT",
        "/dm USER",
        "/dms",
        "/edit [SEQ] TEXT",
        "/delete [SEQ]",
        "/block USER",
        "/unblock USER",
        "/blocks",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .arg("--bogus")
        .output()
        .expect("run parley-cli --bogus");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
}

#[test]
fn two_clients_see_each_others_messages_and_joins() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");

    let room = alice.create("lobby");
    alice.wait_entry("lobby", "--> alice joined");

    let m = bob.mark();
    bob.send(&format!("/join {room}"));
    bob.wait_new(m, "joined lobby");
    // Bob sees the room's recent past and his own join; Alice sees him arrive.
    bob.wait_entry("lobby", "--> alice joined");
    bob.wait_entry("lobby", "--> bob joined");
    alice.wait_entry("lobby", "--> bob joined");

    alice.send("hello bob");
    bob.wait_entry("lobby", "alice: hello bob");
    bob.send("hi alice, //slashes/ are fine");
    alice.wait_entry("lobby", "bob: hi alice, //slashes/ are fine");
    bob.send("//not a command");
    alice.wait_entry("lobby", "bob: /not a command");
    // Each sees their own message once, as the server numbered it.
    alice.wait_entry("lobby", "alice: hello bob");
    bob.wait_entry("lobby", "bob: hi alice, //slashes/ are fine");

    // A second room: /rooms marks both as Bob's; /switch and /leave move between them.
    let side = bob.create("side");
    let m = bob.mark();
    bob.send("/rooms");
    bob.wait_new(m, "2 room(s); * = you are in it");
    let lobby_row = bob.wait_new(m, &format!("* {room}"));
    assert!(
        lobby_row.contains("lobby") && lobby_row.contains("2/"),
        "{lobby_row:?}"
    );
    let side_row = bob.wait_new(m, &format!("* {side}"));
    assert!(
        side_row.contains("side") && side_row.contains("1/"),
        "{side_row:?}"
    );
    let m = bob.mark();
    bob.send("/switch lobby");
    bob.wait_new(m, "current room: lobby");
    let m = bob.mark();
    bob.send(&format!("/leave {side}"));
    bob.wait_new(m, "left side");
    bob.send("back in the lobby");
    alice.wait_entry("lobby", "bob: back in the lobby");
    let m = alice.mark();
    alice.send(&format!("/who {room}"));
    alice.wait_new(m, "lobby (id ");
    alice.wait_new(m, "bob");

    let (status, alice_log) = alice.finish();
    assert!(
        status.success(),
        "alice exit: {status}\n{}",
        alice_log.join("\n")
    );
    let (status, bob_log) = bob.finish();
    assert!(
        status.success(),
        "bob exit: {status}\n{}",
        bob_log.join("\n")
    );
    for line in alice_log.iter().chain(&bob_log) {
        assert!(
            !line.contains('\x1b'),
            "colour codes outside a terminal: {line:?}"
        );
    }
    let count = |log: &[String], rest: &str| {
        let want = format!(" [lobby] {rest}");
        log.iter().filter(|l| is_entry(l, &want)).count()
    };
    assert_eq!(count(&bob_log, "alice: hello bob"), 1);
    assert_eq!(count(&alice_log, "bob: hi alice, //slashes/ are fine"), 1);
    assert_eq!(count(&bob_log, "--> bob joined"), 1);
}

#[test]
fn users_shows_presence_and_last_seen() {
    // Presence drops one second after the last connection closes.
    let server = Server::start(&["--presence-timeout", "1"]);
    let mut carol = Client::start("carol", &server.url(), PASSWORD, &[]);
    carol.register("carol");
    let (status, _) = carol.finish();
    assert!(status.success());

    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    let room = alice.create("den");
    bob.send(&format!("/join {room}"));
    alice.wait_entry("den", "--> bob joined");

    // Everyone is listed; those connected are online, carol is offline with a time.
    let deadline = Instant::now() + WAIT;
    loop {
        let m = alice.mark();
        alice.send("/users");
        alice.wait_new(m, "user(s)");
        let carol_line = alice.wait_new(m, "carol");
        let alice_line = alice.wait_new(m, "alice ");
        let bob_line = alice.wait_new(m, "bob ");
        assert!(alice_line.ends_with("online"), "{alice_line:?}");
        assert!(bob_line.ends_with("online"), "{bob_line:?}");
        if carol_line.contains("offline, last seen ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol never shown offline: {carol_line:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }

    // A presence change of someone sharing a room is shown as it happens.
    let m = alice.mark();
    let (status, _) = bob.finish();
    assert!(status.success());
    alice.wait_new(m, "* bob went offline");

    let m = alice.mark();
    alice.send("/who");
    alice.wait_new(m, "den (id ");
    let bob_line = alice.wait_new(m, "bob");
    assert!(bob_line.ends_with("offline"), "{bob_line:?}");
}

#[test]
fn errors_are_printed_plainly_and_the_client_keeps_running() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    alice.register("alice");

    // A room that is full: capacity 1, its owner inside. Made with a direct REST call.
    let api = parley_cli::api::Api::new(
        parley_cli::http::Endpoint::parse(&server.url()).expect("server url"),
    );
    let token = api.login("alice", PASSWORD).expect("login").token;
    let full = api
        .create_room(&token, "tiny", Some(1))
        .expect("create a room of capacity 1");

    let mut mallory = Client::start("mallory", &server.url(), "wrong-password", &[]);
    let m = mallory.mark();
    mallory.send("/login alice");
    let line = mallory.wait_new(m, "login failed");
    assert!(line.starts_with("! "), "errors stand out: {line:?}");
    assert!(line.contains("invalid_credentials"), "{line:?}");

    mallory.register("mallory");
    for (input, code) in [
        ("/join no-such-room".to_owned(), "room_not_found"),
        (format!("/join {}", full.id), "room_full"),
        ("/frobnicate".to_owned(), "unknown_command"),
        ("/register x".to_owned(), "not a valid username"),
        ("/history abc".to_owned(), "usage: /history"),
    ] {
        let m = mallory.mark();
        mallory.send(&input);
        let line = mallory.wait_new(m, code);
        assert!(line.starts_with("! "), "{input}: {line:?}");
    }
    let m = mallory.mark();
    mallory.send("a message with no room");
    mallory.wait_new(m, "! no current room");

    // Still running, still useful.
    mallory.create("after");
    mallory.send("still here");
    mallory.wait_entry("after", "mallory: still here");
    // As a script it failed, though: its exit status says so.
    let (status, log) = mallory.finish();
    assert_eq!(status.code(), Some(1), "{}", log.join("\n"));
}

#[test]
fn password_from_stdin_and_user_flag() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    let room = alice.create("quiet");

    // A script: password on the first line, then messages.
    let mut script = Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .args([
            "--server",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
        ])
        .env_remove("PARLEY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn scripted client");
    let mut stdin = script.stdin.take().expect("stdin");
    writeln!(stdin, "{PASSWORD}\n/switch {room}\nfrom a script").expect("write script");
    drop(stdin);
    let out = script.wait_with_output().expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("logged in as alice"), "{text}");
    // It exits only once its message was acknowledged: so it has seen it.
    assert!(
        text.lines()
            .any(|l| is_entry(l, " [quiet] alice: from a script")),
        "{text}"
    );
    alice.wait_entry("quiet", "alice: from a script");
}

#[test]
fn a_piped_script_faster_than_the_rate_limit_is_delivered_in_order() {
    // The server's defaults: 10 messages a second, bursts of 30.
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    alice.create("flood");
    for i in 1..=60 {
        alice.send(&format!("line {i}"));
    }
    let (status, log) = alice.finish();
    let got: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("[flood] alice: line "))
        .collect();
    let want: Vec<String> = (1..=60)
        .map(|i| format!("[flood] alice: line {i}"))
        .collect();
    assert!(status.success(), "exit {status}\n{}", log.join("\n"));
    assert_eq!(got.len(), 60, "{}", log.join("\n"));
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.ends_with(w.as_str()),
            "out of order: {g:?} where {w:?} was due"
        );
    }
    assert!(
        !log.iter().any(|l| l.contains("connection lost")),
        "the client must pace itself, not get closed: {}",
        log.join("\n")
    );
}

/// A port that was free a moment ago, for a server that must come back on the same one.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

#[test]
fn reconnects_after_a_server_restart_and_shows_missed_messages_once() {
    let dir = temp_dir("restart");
    let bind = format!("127.0.0.1:{}", free_port());
    let server = Server::durable(&dir, &bind).expect("durable server starts");
    let url = server.url();

    let mut alice = Client::start("alice", &url, PASSWORD, &[]);
    let mut bob = Client::start("bob", &url, PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    let room = alice.create("ops");
    bob.send(&format!("/join {room}"));
    alice.wait_entry("ops", "--> bob joined");
    bob.send("before the restart");
    alice.wait_entry("ops", "bob: before the restart");

    // The server dies mid-conversation.
    let (ma, mb) = (alice.mark(), bob.mark());
    server.kill();
    alice.wait_new(ma, "connection lost");
    bob.wait_new(mb, "connection lost");
    // Alice types while it is down: queued, delivered once it is back.
    alice.send("typed while the server was down");
    // Let the back-off grow (0.25, 0.5, 1, 2 s...) so that what Bob posts below lands
    // while Alice is away and reaches her only through her `sync`.
    alice.wait_new(ma, "reconnect attempt 3 failed");

    // It comes back on the same address with the same data.
    let server = Server::restart(&dir, &bind);

    // Bob, on another device, posts at once, very likely before the others reconnect.
    let mut bob2 = Client::start("bob2", &server.url(), PASSWORD, &["--user", "bob"]);
    bob2.wait_for("logged in as bob");
    bob2.wait_for("current room: ops");
    bob2.send("sent while you were away 1");
    bob2.send("sent while you were away 2");
    let (status, log) = bob2.finish();
    assert!(status.success(), "bob2: {status}\n{}", log.join("\n"));

    // Alice and Bob come back by themselves and catch up.
    alice.wait_for("reconnected");
    bob.wait_for("reconnected");
    for c in [&mut alice, &mut bob] {
        c.wait_entry("ops", "bob: sent while you were away 1");
        c.wait_entry("ops", "bob: sent while you were away 2");
        c.wait_entry("ops", "alice: typed while the server was down");
    }
    // A last message proves the conversation goes on, and bounds the log for counting.
    bob.send("after the restart");
    alice.wait_entry("ops", "bob: after the restart");
    bob.wait_entry("ops", "bob: after the restart");

    for c in [&alice, &bob] {
        for rest in [
            "bob: before the restart",
            "bob: sent while you were away 1",
            "bob: sent while you were away 2",
            "alice: typed while the server was down",
            "bob: after the restart",
            "--> bob joined",
        ] {
            assert_eq!(
                c.count_entry("ops", rest),
                1,
                "{}: {rest:?} not exactly once:\n{}",
                c.name,
                c.log.join("\n")
            );
        }
    }
    let (status, _) = alice.finish();
    assert!(status.success());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_message_in_flight_across_a_server_restart_is_posted_once_whatever_the_server_made_of_it() {
    let dir = temp_dir("in-flight");
    let bind = format!("127.0.0.1:{}", free_port());
    let server = Server::durable(&dir, &bind).expect("durable server starts");
    // Alice talks to the server through the relay, Bob directly.
    let relay = Relay::start(&bind);
    let mut alice = Client::start("alice", &relay.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    let room = alice.create("ops");
    bob.send(&format!("/join {room}"));
    alice.wait_entry("ops", "--> bob joined");

    // `//literal` posts `/literal`: the text the server keeps is not the text Alice sent.
    // The server gets it and says so to Bob, but its answer never reaches Alice...
    relay.swallow(true);
    let (ma, mb) = (alice.mark(), bob.mark());
    alice.send("//literal");
    bob.wait_new(mb, "alice: /literal");
    // ...for the server dies, and Alice's connection with it.
    server.kill();
    relay.cut();
    relay.swallow(false);
    alice.wait_new(ma, "connection lost");
    bob.wait_new(mb, "connection lost");

    let server = Server::restart(&dir, &bind);
    alice.wait_new(ma, "reconnected");
    bob.wait_new(mb, "reconnected");
    // A last message proves the conversation goes on, and bounds the logs for counting.
    alice.send("after the restart");
    bob.wait_entry("ops", "alice: after the restart");
    alice.wait_entry("ops", "alice: after the restart");

    for c in [&alice, &bob] {
        for rest in ["alice: /literal", "alice: after the restart"] {
            assert_eq!(
                c.count_entry("ops", rest),
                1,
                "{}: {rest:?} not exactly once:\n{}",
                c.name,
                c.log.join("\n")
            );
        }
    }
    let (status, log) = alice.finish();
    assert!(status.success(), "alice: {status}\n{}", log.join("\n"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn moderators_kick_and_ban_and_private_rooms_stay_hidden() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut carol = Client::start("carol", &server.url(), PASSWORD, &[]);
    let mut dave = Client::start("dave", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    carol.register("carol");
    dave.register("dave");
    // Alice on a second device, to see what reaches her other connections.
    let mut alice2 = Client::start("alice2", &server.url(), PASSWORD, &["--user", "alice"]);
    alice2.wait_for("connected as alice");

    let lobby = alice.create("lobby");
    carol.send(&format!("/join {lobby}"));
    alice.wait_entry("lobby", "--> carol joined");

    // A kick: everyone sees it; Carol loses the room, and may come back.
    let (ma, mc) = (alice.mark(), carol.mark());
    alice.send("/kick carol spam");
    alice.wait_entry_new(ma, "lobby", "* carol was kicked by alice (spam)");
    carol.wait_entry_new(mc, "lobby", "* carol was kicked by alice (spam)");
    carol.wait_new(mc, "you are no longer in lobby");
    let mc = carol.mark();
    carol.send(&format!("/join {lobby}"));
    carol.wait_new(mc, "joined lobby");
    let ma = alice.mark();
    carol.send("back again");
    alice.wait_entry_new(ma, "lobby", "carol: back again");

    // A ban: she is out and stays out.
    let (ma, mc) = (alice.mark(), carol.mark());
    alice.send("/ban carol flooding");
    alice.wait_entry_new(ma, "lobby", "* carol was banned by alice (flooding)");
    carol.wait_entry_new(mc, "lobby", "* carol was banned by alice (flooding)");
    carol.wait_new(mc, "you are no longer in lobby");
    let mc = carol.mark();
    carol.send(&format!("/join {lobby}"));
    let line = carol.wait_new(mc, "(banned)");
    assert!(line.starts_with("! cannot join"), "{line:?}");
    let mc = carol.mark();
    carol.send("anyone there?");
    carol.wait_new(mc, "! no current room");
    let ma = alice.mark();
    alice.send("/bans");
    alice.wait_new(ma, "1 banned from lobby");
    let row = alice.wait_new(ma, "carol ");
    assert!(
        row.contains("by alice") && row.contains("(flooding)"),
        "{row:?}"
    );

    // Moderators: Alice makes Dave one after he joins.
    dave.send(&format!("/join {lobby}"));
    alice.wait_entry("lobby", "--> dave joined");
    let ma = alice.mark();
    alice.send("/op dave");
    alice.wait_entry_new(ma, "lobby", "* alice made dave a moderator");
    let ma = alice.mark();
    alice.send("/deop dave");
    alice.wait_entry_new(ma, "lobby", "* alice made dave a member");
    // A member may not kick: the refusal is printed plainly.
    let md = dave.mark();
    dave.send("/kick alice");
    let line = dave.wait_new(md, "(forbidden)");
    assert!(line.starts_with("! "), "{line:?}");

    // A private room: Dave neither sees it nor gets in uninvited.
    let secret = alice.create("secret");
    // Her other device learns of it from the `joined` frame.
    alice2.wait_for(&format!("you are now in secret (id {secret})"));
    let ma = alice.mark();
    alice.send("/visibility private");
    alice.wait_entry_new(ma, "secret", "* alice made the room private");
    alice.send("/topic plans for the week");
    alice.wait_entry_new(
        ma,
        "secret",
        "* alice set the topic to \"plans for the week\"",
    );
    let ma = alice.mark();
    alice.send("/topic");
    alice.wait_new(ma, "topic of secret: plans for the week");
    let md = dave.mark();
    dave.send("/rooms");
    // /invites prints after /rooms is done: it bounds the listing.
    dave.send("/invites");
    dave.wait_new(md, "no pending invitations");
    let listing: Vec<&String> = dave.log[md..].iter().collect();
    assert!(
        listing.iter().any(|l| l.contains(&lobby)),
        "the public room is listed: {listing:?}"
    );
    assert!(
        !listing
            .iter()
            .any(|l| l.contains(&secret) || l.contains("secret")),
        "the private room is not: {listing:?}"
    );
    let md = dave.mark();
    dave.send(&format!("/join {secret}"));
    let line = dave.wait_new(md, "(room_restricted)");
    assert!(line.starts_with("! cannot join"), "{line:?}");

    // Invited, he may: the invitation says how, and the topic shows on arrival.
    let md = dave.mark();
    alice.send("/invite dave");
    dave.wait_new(
        md,
        &format!("* alice invited you to secret ({secret}); type /join {secret} to accept"),
    );
    dave.send(&format!("/join {secret}"));
    dave.wait_new(md, "joined secret (id ");
    dave.wait_new(md, "topic of secret: plans for the week");
    alice.wait_entry("secret", "--> dave joined");

    // A mute: his messages are refused, with how long it lasts.
    let ma = alice.mark();
    alice.send("/mute dave 10m");
    alice.wait_new(ma, "[secret] * dave was muted by alice until ");
    let md = dave.mark();
    dave.send("/switch secret");
    dave.wait_new(md, "current room: secret (private)");
    dave.send("let me speak");
    let line = dave.wait_new(md, "(muted)");
    assert!(
        line.starts_with("! not sent to secret") && line.contains("you may post again in"),
        "{line:?}"
    );
    let ma = alice.mark();
    alice.send("/unmute dave");
    alice.wait_entry_new(ma, "secret", "* dave is no longer muted (alice)");

    alice.send("/clear-topic");
    alice.wait_entry_new(ma, "secret", "* alice cleared the topic");
    alice.send("/rename hideout");
    alice.wait_entry_new(ma, "secret", "* alice renamed the room to hideout");
    dave.wait_entry_new(md, "secret", "* alice renamed the room to hideout");

    // Deleting the room takes it from Dave's list too.
    let md = dave.mark();
    alice.send("/delete-room");
    alice.wait_new(ma, "deleted hideout");
    dave.wait_new(md, "* hideout was deleted by alice");
    dave.wait_new(md, "current room: lobby");
    alice2.wait_for("* hideout was deleted by alice");
    // Dave's join made one notice, not a second one from the `joined` frame.
    assert_eq!(
        dave.log
            .iter()
            .filter(|l| l.contains("joined secret (id "))
            .count(),
        1
    );
    assert!(!dave.log.iter().any(|l| l.contains("you are now in")));

    // Alice hands the lobby to Dave and stays on as a moderator.
    let (ma, md) = (alice.mark(), dave.mark());
    alice.send("/switch lobby");
    alice.send("/owner dave");
    alice.wait_new(ma, "dave is now the owner of lobby; you are a moderator");
    for (c, m) in [(&mut alice, ma), (&mut dave, md)] {
        c.wait_entry_new(m, "lobby", "* dave is now the owner");
        c.wait_entry_new(m, "lobby", "* alice is now a moderator");
    }
    let md = dave.mark();
    dave.send(&format!("/who {lobby}"));
    dave.wait_new(md, "owner dave");
    let row = dave.wait_new(md, "alice ");
    assert!(row.ends_with("moderator"), "{row:?}");

    for c in [alice, alice2, carol, dave] {
        let name = c.name.clone();
        let (status, log) = c.finish();
        exit_tells_errors(&name, status, &log);
    }
}

#[test]
fn registration_by_invite_code_and_admin_commands() {
    let server = Server::start(&["--registration", "invite", "--admin", "alice"]);
    // An administrator registers with the admin setup code from the server's log.
    let setup = server.admin_setup_code();
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &["--invite-code", &setup]);
    alice.register("alice");
    alice.wait_for("you are a server administrator");

    // Without a code, or with a bad one, Bob is told what is missing.
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    let m = bob.mark();
    bob.send("/register bob");
    let line = bob.wait_new(m, "invite code");
    assert!(line.starts_with("! register failed"), "{line:?}");
    let m = bob.mark();
    bob.send("/register bob not-a-code");
    let line = bob.wait_new(m, "not accepted");
    assert!(line.starts_with("! register failed"), "{line:?}");

    let m = alice.mark();
    alice.send("/admin invite-code 2 3600");
    let line = alice.wait_new(m, "invite code: ");
    let code = line
        .split("invite code: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a code in the notice")
        .to_owned();
    assert!(line.contains("(2 use(s)"), "{line:?}");
    bob.send(&format!("/register bob {code}"));
    bob.wait_for("logged in as bob");
    bob.wait_for("connected as bob");

    // The flag works as well as the argument.
    let mut carol = Client::start("carol", &server.url(), PASSWORD, &["--invite-code", &code]);
    carol.register("carol");

    // A member may not administer.
    let m = bob.mark();
    bob.send("/admin disable carol");
    bob.wait_new(m, "! /admin: you are not an administrator");

    // A disabled account is logged out and cannot log in again.
    let m = carol.mark();
    alice.send("/admin disable carol");
    alice.wait_for("disabled carol");
    carol.wait_new(m, "log in again");
    let m = carol.mark();
    carol.send("/login carol");
    let line = carol.wait_new(m, "login failed");
    assert!(line.contains("disabled"), "{line:?}");
    alice.send("/admin enable carol");
    alice.wait_for("enabled carol");
    let m = carol.mark();
    carol.send("/login carol");
    carol.wait_new(m, "logged in as carol");

    // An account made by an administrator.
    alice.send("/admin create erin");
    alice.wait_for("created the account erin");
    let mut erin = Client::start("erin", &server.url(), PASSWORD, &["--user", "erin"]);
    erin.wait_for("connected as erin");

    for c in [alice, bob, carol, erin] {
        let name = c.name.clone();
        let (status, log) = c.finish();
        exit_tells_errors(&name, status, &log);
    }

    // A closed server says so.
    let closed = Server::start(&["--registration", "closed"]);
    let mut frank = Client::start("frank", &closed.url(), PASSWORD, &[]);
    let m = frank.mark();
    frank.send("/register frank");
    let line = frank.wait_new(m, "registration is closed");
    assert!(line.starts_with("! register failed"), "{line:?}");
}

#[test]
fn direct_messages_are_listed_apart_and_blocks_refuse_them() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    alice.create("lobby");

    // /msg opens the DM and posts there; the current room stays the lobby.
    let (ma, mb) = (alice.mark(), bob.mark());
    alice.send("/msg Bob psst, over here");
    alice.wait_new(ma, "direct messages with Bob are @bob");
    alice.wait_entry_new(ma, "@bob", "alice: psst, over here");
    bob.wait_new(mb, "direct messages with alice are @alice");
    bob.wait_entry_new(mb, "@alice", "alice: psst, over here");
    alice.send("still in the lobby");
    alice.wait_entry_new(ma, "lobby", "alice: still in the lobby");

    // Bob answers by name, and makes the DM current by the other user's name.
    let mb = bob.mark();
    bob.send("/msg alice hi!");
    alice.wait_entry_new(ma, "@bob", "bob: hi!");
    bob.send("/switch alice");
    bob.wait_new(mb, "current room: @alice");
    bob.send("/me waves");
    alice.wait_entry_new(ma, "@bob", "* bob waves");

    // /rooms lists rooms and, apart, DMs; the DM is not a row of the room table.
    let ma = alice.mark();
    alice.send("/rooms");
    alice.wait_new(ma, "1 room(s); * = you are in it");
    alice.wait_new(ma, "1 direct message room(s)");
    alice.wait_after(ma, "the DM row", |l| {
        l.contains("@bob ") && l.contains(" id ")
    });
    let listing = alice.log[ma..].to_vec();
    let dm_rows: Vec<&String> = listing.iter().filter(|l| l.contains("@bob")).collect();
    assert_eq!(dm_rows.len(), 1, "{listing:?}");
    let dm_at = listing
        .iter()
        .position(|l| l.contains("direct message room(s)"));
    let bob_at = listing.iter().position(|l| l.contains("@bob"));
    assert!(
        bob_at > dm_at,
        "the DM is listed under its own heading: {listing:?}"
    );
    assert!(
        !listing.iter().any(|l| l.contains("alice, bob")),
        "{listing:?}"
    );
    let ma = alice.mark();
    alice.send("/dm bob");
    alice.wait_new(ma, "current room: @bob");
    alice.send("now in the DM");
    bob.wait_entry("@alice", "alice: now in the DM");

    // Blocks: Bob blocks Alice; her posts in their DM are refused, then allowed again.
    let mb = bob.mark();
    bob.send("/block alice");
    bob.wait_new(mb, "blocked alice");
    bob.send("/blocks");
    bob.wait_new(mb, "1 blocked user(s)");
    let ma = alice.mark();
    alice.send("/msg bob are you there?");
    let line = alice.wait_new(ma, "(blocked)");
    assert!(line.starts_with("! "), "{line:?}");
    let mb = bob.mark();
    bob.send("/unblock alice");
    bob.wait_new(mb, "unblocked alice");
    let line = {
        bob.send("/unblock alice");
        bob.wait_new(mb, "is not blocked")
    };
    assert!(line.starts_with("! "), "{line:?}");
    alice.send("/msg bob back again");
    bob.wait_entry_new(mb, "@alice", "alice: back again");

    // Nobody to talk to: the server's error, plainly.
    let ma = alice.mark();
    alice.send("/msg nobody-here hello");
    let line = alice.wait_new(ma, "cannot open a DM with nobody-here");
    assert!(line.contains("(user_not_found)"), "{line:?}");
    alice.send("/msg alice me, myself");
    let line = alice.wait_new(ma, "(invalid_target)");
    assert!(
        line.starts_with("! cannot open a DM with alice"),
        "{line:?}"
    );

    for c in [alice, bob] {
        let name = c.name.clone();
        let (status, log) = c.finish();
        exit_tells_errors(&name, status, &log);
        assert_eq!(
            log.iter()
                .filter(|l| is_entry(l, " [@alice] alice: psst, over here")
                    || is_entry(l, " [@bob] alice: psst, over here"))
                .count(),
            1,
            "{name} saw the first DM once"
        );
    }
}

#[test]
fn unread_counts_on_reconnect_follow_what_was_shown() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    let room = alice.create("lobby");
    bob.send(&format!("/join {room}"));
    alice.wait_entry("lobby", "--> bob joined");

    // Bob sees this one in his current room: it is read.
    alice.send("seen by bob");
    bob.wait_entry("lobby", "alice: seen by bob");
    let (status, log) = bob.finish();
    assert!(status.success(), "bob: {status}\n{}", log.join("\n"));

    // While he is away: three in the lobby, one in a DM.
    alice.send("one");
    alice.send("two");
    alice.send("three @bob");
    alice.send("/msg bob while you were out");
    alice.wait_entry("lobby", "alice: three @bob");
    alice.wait_entry("@bob", "alice: while you were out");

    let mut bob = Client::start("bob", &server.url(), PASSWORD, &["--user", "bob"]);
    bob.wait_for("connected as bob");
    bob.wait_for("-- 3 unread in lobby, 1 unread in @alice");

    // Shown in the current room, the lobby is read; the DM is not until he looks.
    let m = bob.mark();
    bob.send("/history 5");
    bob.wait_new(m, "last 5 entries of lobby");
    bob.send("/dms");
    let row = bob.wait_after(m, "the DM row", |l| {
        l.contains("@alice ") && l.contains(" id ")
    });
    assert!(row.ends_with("1 unread"), "{row:?}");
    // Switching to the DM shows what he missed there, and marks it read.
    bob.send("/switch alice");
    bob.wait_new(m, "current room: @alice");
    bob.wait_new(m, "-- 1 unread in @alice:");
    bob.wait_new(m, "[@alice] alice: while you were out");
    let (status, log) = bob.finish();
    assert!(status.success(), "bob: {status}\n{}", log.join("\n"));

    // Nothing new since: nothing unread, and he is not told so.
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &["--user", "bob"]);
    bob.wait_for("connected as bob");
    let m = bob.mark();
    bob.send("/dms");
    let row = bob.wait_after(m, "the DM row", |l| {
        l.contains("@alice ") && l.contains(" id ")
    });
    assert!(!row.contains("unread"), "{row:?}");
    alice.send("/switch lobby");
    alice.send("and one more");
    bob.wait_entry("lobby", "alice: and one more");
    let (status, log) = bob.finish();
    assert!(status.success(), "bob: {status}\n{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.contains("unread in")),
        "{}",
        log.join("\n")
    );
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

#[test]
fn edits_and_deletions_show_live_and_in_history() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    let room = alice.create("lobby");
    bob.send(&format!("/join {room}"));
    alice.wait_entry("lobby", "--> bob joined");

    // /edit without a seq edits Alice's last message; everyone is told which.
    let (ma, mb) = (alice.mark(), bob.mark());
    alice.send("teh first");
    bob.wait_entry_new(mb, "lobby", "alice: teh first");
    alice.wait_entry_new(ma, "lobby", "alice: teh first");
    alice.send("/edit the first");
    let line = bob.wait_after(mb, "the edit", |l| {
        l.contains("[lobby] * alice edited #") && l.ends_with(": the first")
    });
    let first = seq_in(&line);
    alice.wait_new(ma, &format!("* alice edited #{first}: the first"));

    // /delete without a seq deletes her last message.
    alice.send("oops, wrong room");
    bob.wait_entry_new(mb, "lobby", "alice: oops, wrong room");
    alice.wait_entry_new(ma, "lobby", "alice: oops, wrong room");
    alice.send("/delete");
    let line = bob.wait_after(mb, "the deletion", |l| {
        l.contains("[lobby] * message #") && l.ends_with(" was deleted by alice")
    });
    let oops = seq_in(&line);
    assert!(oops > first);

    // By seq: an edit of the first again; Bob may neither edit nor delete it.
    alice.send(&format!("/edit {first} the very first"));
    bob.wait_new(mb, &format!("* alice edited #{first}: the very first"));
    let mb = bob.mark();
    bob.send(&format!("/delete {first}"));
    let line = bob.wait_new(mb, "(forbidden)");
    assert!(line.starts_with("! "), "{line:?}");
    bob.send(&format!("/edit {first} mine now"));
    let line = bob.wait_new(mb, "(forbidden)");
    assert!(line.starts_with("! "), "{line:?}");
    bob.send(&format!("/delete {oops}"));
    let line = bob.wait_new(mb, "(entry_not_found)");
    assert!(line.starts_with("! "), "{line:?}");
    // Bob has posted nothing to edit.
    bob.send("/edit hello");
    bob.wait_new(
        mb,
        "! no message of yours among the last 100 entries of lobby",
    );
    // History rows carry the seq that /edit and /delete take.
    let mb = bob.mark();
    bob.send("/history 10");
    bob.wait_after(mb, "a history row with its seq", |l| {
        l.contains(&format!("#{first} ")) && l.contains("alice: the very first (edited)")
    });

    // Alice on a device that has shown none of her messages: her last one still kept
    // (the deleted one does not count) is found in the history.
    let mut alice2 = Client::start("alice2", &server.url(), PASSWORD, &["--user", "alice"]);
    alice2.wait_for("connected as alice");
    let mb = bob.mark();
    alice2.send("/edit the first, finally");
    bob.wait_new(mb, &format!("* alice edited #{first}: the first, finally"));

    // History serves the latest state: the edited text marked, the deleted one gone.
    for c in [&mut alice, &mut bob] {
        let m = c.mark();
        c.send("/history 10");
        c.wait_new(m, "entries of lobby");
        c.wait_new(m, "[lobby] alice: the first, finally (edited)");
        c.wait_new(m, "[lobby] alice: (deleted)");
        assert!(
            !c.log[m..].iter().any(|l| l.contains("oops")),
            "deleted text is not shown again: {:?}",
            &c.log[m..]
        );
    }

    // Someone joining later sees the same in the context the server sends.
    let mut carol = Client::start("carol", &server.url(), PASSWORD, &[]);
    carol.register("carol");
    carol.send(&format!("/join {room}"));
    carol.wait_entry("lobby", "alice: the first, finally (edited)");
    carol.wait_entry("lobby", "alice: (deleted)");
    carol.wait_entry("lobby", &format!("* message #{oops} was deleted by alice"));
    assert!(
        !carol.log.iter().any(|l| l.contains("oops")),
        "{}",
        carol.log.join("\n")
    );

    for c in [alice, alice2, bob, carol] {
        let name = c.name.clone();
        let (status, log) = c.finish();
        exit_tells_errors(&name, status, &log);
    }
}

#[test]
fn https_and_wss_through_tls_with_a_ca_file() {
    let server = Server::start(&[]);
    let dir = temp_dir("tls");
    let cert = TestCert::new(&dir, false);
    let front = TlsFront::start(&server.addr, &cert);
    let ca = cert.pem_file.to_str().expect("utf-8 path").to_owned();

    // Registering and logging in are HTTPS calls; the echo of a message comes over WSS.
    let mut alice = Client::start("alice", &front.url(), PASSWORD, &["--ca-file", &ca]);
    alice.register("alice");
    alice.create("secure");
    alice.send("over tls");
    alice.wait_entry("secure", "alice: over tls");
    let (status, log) = alice.finish();
    assert!(status.success(), "exit {status}\n{}", log.join("\n"));
    // register, login, /me, create: HTTPS; the WebSocket: one more.
    assert!(
        front.handshakes.load(Ordering::SeqCst) >= 5,
        "{} handshakes",
        front.handshakes.load(Ordering::SeqCst)
    );

    // Without --ca-file the self-signed certificate is refused, and the script says so.
    let (code, text) = script(
        &front.url(),
        &["--user", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("--ca-file"), "a hint: {text}");

    // A script over TLS, as a bot would run one.
    let (code, text) = script(
        &front.url(),
        &["--ca-file", &ca, "--user", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n/switch secure\nfrom a tls script\n"),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("alice: from a tls script"), "{text}");

    // A self-signed certificate marked as a CA (what `openssl req -x509` makes) works
    // when given, by its name too; another file does not make it trusted.
    let ca_cert = TestCert::new(&dir, true);
    let ca_front = TlsFront::start(&server.addr, &ca_cert);
    let ca_pem = ca_cert.pem_file.to_str().expect("utf-8 path").to_owned();
    let by_name = ca_front.url().replace("127.0.0.1", "localhost");
    let (code, text) = script(
        &by_name,
        &["--ca-file", &ca_pem, "--user", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n/switch secure\nfrom behind a CA-flagged certificate\n"),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("alice: from behind a CA-flagged certificate"),
        "{text}"
    );
    let (code, text) = script(
        &ca_front.url(),
        &["--ca-file", &ca, "--user", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scripts_exit_non_zero_when_something_failed() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    alice.create("ops");
    let login = ["--user", "alice", "--password-stdin"];

    // All well: 0.
    let (code, text) = script(
        &server.url(),
        &login,
        &format!("{PASSWORD}\n/switch ops\nall good\n"),
    );
    assert_eq!(code, Some(0), "{text}");

    // A wrong password.
    let (code, text) = script(
        &server.url(),
        &login,
        "not-the-password\n/switch ops\nhello\n",
    );
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("login failed").count(), 1, "{text}");

    // No server there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, text) = script(&dead, &login, &format!("{PASSWORD}\nhello\n"));
    assert_eq!(code, Some(1), "{text}");

    // Not a member of the room named.
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    bob.register("bob");
    bob.create("elsewhere");
    let (code, text) = script(
        &server.url(),
        &login,
        &format!("{PASSWORD}\n/switch elsewhere\nhello\n"),
    );
    assert_eq!(code, Some(1), "{text}");

    // A line the server refuses with an error frame.
    let (code, text) = script(
        &server.url(),
        &login,
        &format!("{PASSWORD}\n/switch ops\n/frobnicate\n"),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("unknown_command"), "{text}");

    // Logging out is no failure.
    let (code, text) = script(
        &server.url(),
        &login,
        &format!("{PASSWORD}\n/switch ops\nbye\n/logout\n"),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("-- logged out"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("! ")),
        "no error: {text}"
    );
}

#[test]
fn rooms_with_spaces_in_their_names_are_joined_and_switched_to_by_name() {
    let server = Server::start(&[]);
    let mut alice = Client::start("alice", &server.url(), PASSWORD, &[]);
    let mut bob = Client::start("bob", &server.url(), PASSWORD, &[]);
    alice.register("alice");
    bob.register("bob");
    alice.create("team room");
    alice.create("other");

    let m = bob.mark();
    bob.send("/join team room");
    bob.wait_new(m, "joined team room");
    bob.send("hello team");
    alice.wait_entry("team room", "bob: hello team");

    let m = alice.mark();
    alice.send("/switch \"team room\"");
    alice.wait_new(m, "current room: team room");
    alice.send("hi bob");
    bob.wait_entry("team room", "alice: hi bob");

    let m = bob.mark();
    bob.send("/leave 'team room'");
    bob.wait_new(m, "left team room");
    let m = bob.mark();
    bob.send("/join \"team room\"");
    bob.wait_new(m, "joined team room");
}

#[test]
fn https_and_wss_against_the_servers_own_tls() {
    let dir = temp_dir("server-tls");
    let cert = TestCert::new(&dir, false);
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, &cert.key_pem).expect("write the key");
    let (cert_path, key_path) = (
        cert.pem_file.to_str().expect("utf-8 path").to_owned(),
        key_file.to_str().expect("utf-8 path").to_owned(),
    );
    let server = Server::start(&["--tls-cert", &cert_path, "--tls-key", &key_path]);
    let url = format!("https://{}", server.addr);
    let mut alice = Client::start("alice", &url, PASSWORD, &["--ca-file", &cert_path]);
    alice.register("alice");
    alice.create("direct tls");
    alice.send("straight to the server");
    alice.wait_entry("direct tls", "alice: straight to the server");
    let (status, log) = alice.finish();
    assert!(status.success(), "exit {status}\n{}", log.join("\n"));

    // Plain HTTP to a TLS port is no server to this client.
    let plain = format!("http://{}", server.addr);
    let (code, text) = script(
        &plain,
        &["--user", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, Some(1), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
