//! The nonce a client sent with a message is kept with the entry, and shown again to that
//! user only: in a `sync` answer, in the REST history, and after a restart.

use std::net::SocketAddr;

use serde_json::Value;

use crate::common::process::{start as start_process, TempDir};
use crate::common::*;
use crate::sync;

/// The entry with `seq` among `entries`.
fn entry_with(entries: &[Value], seq: u64) -> Value {
    entries
        .iter()
        .find(|e| e["seq"] == seq)
        .unwrap_or_else(|| panic!("no entry {seq} in {entries:?}"))
        .clone()
}

/// `sync` from 0 on a new connection of `token`'s user; the entry with `seq`.
async fn synced(addr: SocketAddr, token: &str, room: &str, seq: u64) -> Value {
    let (mut w, _) = ws_hello(addr, token).await;
    let h = sync(&mut w, room, 0).await;
    entry_with(h["entries"].as_array().expect("entries"), seq)
}

/// Alice posts `//slash` (a literal `/slash`) with nonce `n-42` and returns its seq.
async fn post_with_nonce(addr: SocketAddr, alice: &str, room: &str) -> u64 {
    let (mut w, _) = ws_hello(addr, alice).await;
    w.say(room, "//slash", "n-42").await;
    let ack = w.next_where("entry", |f| f["nonce"] == "n-42").await;
    assert_eq!(ack["text"], "/slash", "{ack}");
    seq(&ack)
}

/// Alice posts with a nonce from one connection. Her second connection (another device,
/// or the same app after a reconnect) syncs the room: the entry carries her nonce, and so
/// does her REST history. Bob's sync and history show the same entry without it.
///
/// What a user notices when this breaks: a client that sent a message, lost its connection
/// before the acknowledgement and syncs on reconnecting cannot tell its own pending message
/// from the stored one: it shows the message twice, or sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_history_give_the_sender_its_nonce_back() {
    let s = start(&[]).await;
    let addr = s.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let id = room(addr, &alice, "lobby").await;
    assert_eq!(join(addr, &bob, &id).await.status, 200);
    let at = post_with_nonce(addr, &alice, &id).await;

    let mine = synced(addr, &alice, &id, at).await;
    assert_eq!(
        mine["nonce"], "n-42",
        "alice's other connection syncs her message with its nonce: {mine}"
    );
    assert_eq!(mine["text"], "/slash", "{mine}");
    let theirs = synced(addr, &bob, &id, at).await;
    assert!(
        theirs.get("nonce").is_none(),
        "bob's sync shows no nonce: {theirs}"
    );
    let (entries, _) = history(addr, &alice, &id).await;
    let mine = entry_with(&entries, at);
    assert_eq!(
        mine["nonce"], "n-42",
        "alice's REST history carries her nonce: {mine}"
    );
    let (entries, _) = history(addr, &bob, &id).await;
    let theirs = entry_with(&entries, at);
    assert!(
        theirs.get("nonce").is_none(),
        "bob's REST history shows no nonce: {theirs}"
    );
    s.stop().await;
}

/// The nonce is stored with the entry: after a clean restart, and after `kill -9`, alice's
/// sync still shows it, and bob's still does not.
///
/// What a user notices when this breaks: after a server restart (an upgrade, a crash), a
/// client reconnecting with a message in flight cannot match it and shows or sends it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nonce_survives_a_restart() {
    let tmp = TempDir::new("nonce");
    let data = tmp.data();
    let server = start_process(&data, &[]);
    let addr = server.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let id = room(addr, &alice, "lobby").await;
    assert_eq!(join(addr, &bob, &id).await.status, 200);
    let at = post_with_nonce(addr, &alice, &id).await;
    server.stop().await;

    let mut server = start_process(&data, &[]);
    for how in ["a clean restart", "kill -9"] {
        let addr = server.addr;
        let mine = synced(addr, &alice, &id, at).await;
        assert_eq!(
            mine["nonce"], "n-42",
            "after {how}, alice's sync shows her nonce: {mine}"
        );
        let theirs = synced(addr, &bob, &id, at).await;
        assert!(
            theirs.get("nonce").is_none(),
            "after {how}, bob's sync shows no nonce: {theirs}"
        );
        server.kill_9();
        server = start_process(&data, &[]);
    }
    server.stop().await;
}
