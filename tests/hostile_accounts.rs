//! Accounts against hostile clients (issue 10): the per-address registration limit, the
//! hashing queue that is fair between client addresses and answers 503 with a retry time when
//! full, hashes re-made at the current iteration count, and login throttling that a stranger
//! cannot use to lock a user out. Other client addresses are loopback aliases (127.0.0.x).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use common::journal::{journal_files, payload, record_spans};
use common::process::{start as start_process, TempDir};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn creds(name: &str, password: &str) -> Value {
    json!({ "username": name, "password": password })
}

async fn register_from(addr: SocketAddr, from: &str, name: &str) -> Reply {
    let body = creds(name, PASSWORD);
    request_from(addr, from, "POST", "/api/v1/register", None, Some(&body)).await
}

async fn login_from(addr: SocketAddr, from: &str, name: &str, password: &str) -> Reply {
    let body = creds(name, password);
    request_from(addr, from, "POST", "/api/v1/login", None, Some(&body)).await
}

/// The contract's error shape with `retry_after_ms` and a `Retry-After` header that agree;
/// returns `retry_after_ms`.
fn assert_retry(r: &Reply, status: u16, code: &str) -> u64 {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{:?}",
        r.json()
    );
    r.retry_after_ms()
}

// ----- registrations per address -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_registrations_per_address_are_limited_per_hour() {
    let s = start(&["--register-per-ip-per-hour", "3"]).await;
    assert_eq!(register_from(s.addr, "127.0.0.2", "reg0").await.status, 201);
    // A refused registration does not count.
    assert_eq!(register_from(s.addr, "127.0.0.2", "reg0").await.status, 409);
    for name in ["reg1", "reg2"] {
        assert_eq!(register_from(s.addr, "127.0.0.2", name).await.status, 201);
    }
    let r = register_from(s.addr, "127.0.0.2", "reg3").await;
    let ms = assert_retry(&r, 429, "too_many_attempts");
    assert!(ms <= 3600 * 1000, "{ms}");
    // Other addresses register, and the limited one still logs in.
    assert_eq!(register_from(s.addr, "127.0.0.3", "reg3").await.status, 201);
    assert_eq!(
        login_from(s.addr, "127.0.0.2", "reg0", PASSWORD)
            .await
            .status,
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_under_way_count_so_a_burst_cannot_pass_the_limit() {
    let s = start(&["--register-per-ip-per-hour", "5"]).await;
    let burst: Vec<_> = (0..30)
        .map(|i| {
            let (addr, name) = (s.addr, format!("burst{i}"));
            tokio::spawn(async move { register_from(addr, "127.0.0.4", &name).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap().status);
    }
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 429).count(),
        25,
        "{statuses:?}"
    );
    s.stop().await;
}

// ----- the hashing queue -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_answers_503_with_a_retry_time() {
    let s = start(&["--pbkdf2-iterations", "50000", "--max-pending-hashes", "2"]).await;
    let logins: Vec<_> = (0..12)
        .map(|i| {
            let (addr, name) = (s.addr, format!("nobody{i}"));
            tokio::spawn(async move { login_from(addr, "127.0.0.5", &name, PASSWORD).await })
        })
        .collect();
    let mut busy = 0;
    for l in logins {
        let r = l.await.unwrap();
        if r.status == 503 {
            let ms = assert_retry(&r, 503, "server_busy");
            assert!(ms <= 60_000, "{ms}");
            busy += 1;
        } else {
            assert_eq!(r.status, 401, "{:?}", r.json());
        }
    }
    assert!(
        busy > 0,
        "twelve logins at once never filled a queue of two"
    );
    // The server serves again once the queue drains.
    assert_eq!(
        register_from(s.addr, "127.0.0.6", "after").await.status,
        201
    );
    s.stop().await;
}

/// `parley_hashes_waiting` from `/metrics`.
async fn hashes_waiting(addr: SocketAddr) -> usize {
    let text = String::from_utf8(get(addr, "/metrics", None).await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("parley_hashes_waiting "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_from_one_address_does_not_delay_another_address() {
    const FLOOD: usize = 40;
    // The hashing thread runs at nice 19, so on a busy machine a hash can take a long time:
    // the flood's replies get a minute.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
    let s = start(&["--pbkdf2-iterations", "20000"]).await;
    assert_eq!(
        register_from(s.addr, "127.0.0.2", "realuser").await.status,
        201
    );
    // The flood: logins of unknown names from 127.0.0.1, each a full hash.
    let left = Arc::new(AtomicUsize::new(FLOOD));
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let (left, addr) = (left.clone(), s.addr);
        flood.push(tokio::spawn(async move {
            let body = creds(&format!("flood{i}"), PASSWORD);
            let mut stream = connect_from(addr, "127.0.0.1").await;
            let bytes = request_bytes("POST", "/api/v1/login", None, Some(&body));
            stream.write_all(bytes.as_bytes()).await.unwrap();
            let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
            let reply = loop {
                if let Some(r) = parse_reply(&mut buf) {
                    break r;
                }
                let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                    .await
                    .expect("a reply within a minute")
                    .unwrap();
                assert!(n > 0, "closed without a reply");
                buf.extend_from_slice(&chunk[..n]);
            };
            left.fetch_sub(1, SeqCst);
            reply.status
        }));
    }
    // Most of the flood waits for the hashing thread; then the real user logs in from
    // elsewhere, and waits for a hash or two of it, not for all of it.
    let queued = eventually(|| async { hashes_waiting(s.addr).await >= FLOOD * 3 / 4 }).await;
    assert!(queued, "the flood never filled the hashing queue");
    let body = creds("realuser", PASSWORD);
    let stream = connect_from(s.addr, "127.0.0.2").await;
    let r = tokio::time::timeout(
        PATIENCE,
        request_on(stream, "POST", "/api/v1/login", None, Some(&body)),
    )
    .await
    .expect("the real login was answered");
    let still_waiting = left.load(SeqCst);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        still_waiting >= FLOOD / 2,
        "the login waited for {} of the flood's {FLOOD} hashes",
        FLOOD - still_waiting
    );
    for f in flood {
        assert_eq!(f.await.unwrap(), 401);
    }
    s.stop().await;
}

// ----- re-hashing at the current iteration count -----

/// The hashes the journal of `data` records for `user`, oldest first, with the records'
/// types.
fn journaled_hashes(data: &std::path::Path, user: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in journal_files(data) {
        let bytes = std::fs::read(&file).unwrap();
        for span in record_spans(&bytes) {
            let rec = payload(&bytes, span);
            if rec["username"] == user && rec["hash"].is_string() {
                out.push((
                    rec["t"].as_str().unwrap().to_string(),
                    rec["hash"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_remakes_a_hash_of_another_iteration_count_and_keeps_it() {
    let tmp = TempDir::new("rehash");
    let data = tmp.data();
    let server = start_process(&data, &[]);
    let r = post(
        server.addr,
        "/api/v1/register",
        None,
        creds("olduser", PASSWORD),
    )
    .await;
    assert_eq!(r.status, 201);
    server.stop().await;
    let hashes = journaled_hashes(&data, "olduser");
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].1.starts_with("pbkdf2-sha256$1000$"), "{hashes:?}");

    // The operator raises the cost; the next successful login re-makes the hash, once.
    let raised = ["--pbkdf2-iterations", "3000"];
    let server = start_process(&data, &raised);
    assert_eq!(
        login(server.addr, "olduser", "wrong password!")
            .await
            .status,
        401
    );
    for _ in 0..2 {
        assert_eq!(login(server.addr, "olduser", PASSWORD).await.status, 200);
    }
    server.stop().await;
    let hashes = journaled_hashes(&data, "olduser");
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    assert_eq!(hashes[1].0, "password_changed");
    assert!(hashes[1].1.starts_with("pbkdf2-sha256$3000$"), "{hashes:?}");

    // The new hash survives a restart and verifies.
    let server = start_process(&data, &raised);
    assert_eq!(login(server.addr, "olduser", PASSWORD).await.status, 200);
    assert_eq!(
        login(server.addr, "olduser", "wrong password!")
            .await
            .status,
        401
    );
    server.stop().await;
    assert_eq!(journaled_hashes(&data, "olduser").len(), 2);
}

// ----- login throttling per account and address -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_lock_out_that_address_only() {
    let s = start(&[]).await;
    assert_eq!(
        register_from(s.addr, "127.0.0.1", "victim").await.status,
        201
    );
    for _ in 0..5 {
        let r = login_from(s.addr, "127.0.0.2", "victim", "wrong password!").await;
        assert_eq!(r.status, 401);
    }
    // The stranger's address is locked out, even with the right password...
    let r = login_from(s.addr, "127.0.0.2", "VICTIM", PASSWORD).await;
    let ms = assert_retry(&r, 429, "too_many_attempts");
    assert!(ms <= 15 * 60 * 1000, "{ms}");
    // ...the user, elsewhere, is not.
    let r = login_from(s.addr, "127.0.0.3", "victim", PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    // And their success does not clear the stranger's count.
    let r = login_from(s.addr, "127.0.0.2", "victim", PASSWORD).await;
    assert_eq!(r.status, 429);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_ceiling_counts_failures_from_every_address() {
    let s = start(&["--login-account-failures", "8"]).await;
    assert_eq!(
        register_from(s.addr, "127.0.0.1", "target").await.status,
        201
    );
    assert_eq!(
        register_from(s.addr, "127.0.0.1", "bystander").await.status,
        201
    );
    for from in ["127.0.0.2", "127.0.0.3"] {
        for _ in 0..4 {
            let r = login_from(s.addr, from, "target", "wrong password!").await;
            assert_eq!(r.status, 401);
        }
    }
    // Eight failures, none of the addresses at five: the account is closed to everyone.
    for from in ["127.0.0.2", "127.0.0.4"] {
        let r = login_from(s.addr, from, "target", PASSWORD).await;
        let ms = assert_retry(&r, 429, "too_many_attempts");
        assert!(ms <= 15 * 60 * 1000, "{ms}");
    }
    let r = login_from(s.addr, "127.0.0.4", "bystander", PASSWORD).await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

// ----- names no account can have (issue 20) -----

/// A login with a name that fails the username rules is answered 401 at once and leaves no
/// throttle entry: the old code kept the (huge) name in the throttle tables, so a sixth try
/// from the same address got 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_an_impossible_name_is_refused_without_a_throttle_entry() {
    let s = start(&["--pbkdf2-iterations", "1000"]).await;
    let huge = "X".repeat(60_000);
    for _ in 0..8 {
        let r = login_from(s.addr, "127.0.0.2", &huge, "wrong-password").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "invalid_credentials"),
            "{:?}",
            r.json()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_logs_at_most_a_prefix_of_the_name() {
    let tmp = TempDir::new("huge-names");
    let s = start_process(&tmp.data(), &[]);
    assert_eq!(
        register_from(s.addr, "127.0.0.1", "someone").await.status,
        201
    );
    let huge = "N".repeat(60_000);
    for _ in 0..8 {
        let r = login_from(s.addr, "127.0.0.2", &huge, "wrong password!").await;
        assert_eq!((r.status, r.code().as_str()), (401, "invalid_credentials"));
    }
    let text = s.stderr_eventually_contains("login failed").await;
    let longest = text
        .lines()
        .map(|l| l.matches('N').count())
        .max()
        .unwrap_or(0);
    assert!(
        longest <= 64,
        "a failed login's line repeats at most a prefix of the name, not {longest} characters"
    );
    assert!(text.len() < 8 * 1000, "the log is {} bytes", text.len());
    let r = login_from(s.addr, "127.0.0.2", "someone", PASSWORD).await;
    assert_eq!(r.status, 200, "real accounts are served as before");
}
